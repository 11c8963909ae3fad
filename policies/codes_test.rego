# Every outcome of the shipped policy carries its stable code and params: what operators
# count decisions by (`decisions summary --by code`) and clients branch on (problem+json).
package portcullis_test

import data.portcullis

test_code_unauthenticated if {
	d := portcullis.decision with input as {"action": "organization:read", "resource": {"type": "organization", "org": "acme"}}
	coded(d, "unauthenticated", {})
}

test_code_no_rule if {
	d := portcullis.decision with input as {"resource": {"type": "organization"}, "subject": alice}
	coded(d, "no_rule", {})
}

test_code_not_registered if {
	d := decide("organization:create", {"type": "organization"}, object.union(carol, {"id": null}), {})
	coded(d, "not_registered", {"subject": "idp|carol"})
}

test_code_own_registration_and_registration_not_own if {
	coded(register(object.union(carol, {"id": null})), "own_registration", {})
	coded(decide("profile:register", {"type": "profile", "user": alice.id}, carol, {}), "registration_not_own", {})
}

test_code_no_rule_outside_organization if {
	coded(decide("billing:read", {"type": "billing"}, alice, {}), "no_rule_outside_organization", {"action": "billing:read"})
}

test_code_open_to_registered_users if {
	coded(decide("organization:create", {"type": "organization"}, carol, {}), "open_to_registered_users", {"action": "organization:create"})
	coded(decide("organization:list", {"type": "organization"}, carol, {}), "open_to_registered_users", {"action": "organization:list"})
}

test_codes_of_invitations if {
	params := {"invitation": "inv-1"}
	coded(accept(invitation({})), "invitation_addressed_to_you", params)
	coded(accept({}), "invitation_not_found", params)
	coded(accept(invitation({"accepted": true})), "invitation_already_accepted", params)
	coded(accept(invitation({"email": "mallory@example.com"})), "invitation_not_addressed_to_you", params)
	no_email := decide("invitation:accept", {"type": "invitation", "invitation": "inv-1"}, object.union(carol, {"email": null}), invitation({}))
	coded(no_email, "no_email_address", params)
}

test_codes_of_profiles if {
	coded(decide("profile:read", {"type": "profile", "user": "me"}, carol, {}), "own_profile", {"action": "profile:read"})
	coded(decide("profile:update", {"type": "profile", "user": alice.id}, carol, {}), "profile_not_own", {"action": "profile:update"})
}

test_code_granted_names_the_permission_and_the_organization if {
	d := decide("pipeline:run", acme("pipeline", {"project": "api"}), bob, object.union(org_exists, {"project": found}))
	coded(d, "granted", {"action": "pipeline:run", "permission": "pipeline:*", "organization": "acme"})
}

test_code_missing_permission if {
	d := decide("project:delete", acme("project", {"project": "api"}), bob, object.union(org_exists, {"project": found}))
	coded(d, "missing_permission", {"permission": "project:delete", "organization": "acme"})
}

test_code_not_a_member_and_member_of_no_organization if {
	coded(decide("organization:read", {"type": "organization", "org": "globex"}, bob, org_exists), "not_a_member", {"organization": "globex"})
	coded(decide("organization:read", acme("organization", {}), carol, org_exists), "member_of_no_organization", {"organization": "acme"})
}

test_code_organization_not_found if {
	coded(decide("organization:read", acme("organization", {}), alice, {}), "organization_not_found", {"organization": "acme"})
	coded(decide("organization:read", {"type": "organization", "org": "ACME"}, alice, org_exists), "organization_not_found", {"organization": "ACME"})
}

test_code_resource_not_found_names_every_parameter if {
	d := decide("team:update", acme("team", {"team": "ops", "project": "api", "user": carol.id}), alice, object.union(org_exists, {"team": missing, "project": elsewhere}))
	coded(d, "resource_not_found", {"organization": "acme", "resources": {"project": "api", "team": "ops", "user": carol.id}})
	count(d.reasons) == 3
}

test_code_member_may_leave if {
	coded(decide("member:leave", acme("member", {}), bob, org_exists), "member_may_leave", {"organization": "acme"})
}

test_code_builtin_role_protected if {
	role := {"exists": true, "in_organization": false, "builtin": true}
	d := decide("role:delete", acme("role", {"role": "default"}), alice, object.union(org_exists, {"role": role}))
	coded(d, "builtin_role_protected", {"organization": "acme", "role": "default"})
}

test_code_organization_has_projects if {
	d := decide("organization:delete", acme("organization", {}), alice, with_projects(7, ["a", "b"]))
	coded(d, "organization_has_projects", {"organization": "acme", "project_count": 7, "projects": ["a", "b"]})
	unnamed := decide("organization:delete", acme("organization", {}), alice, {"organization": {"exists": true, "project_count": 3}})
	coded(unnamed, "organization_has_projects", {"organization": "acme", "project_count": 3, "projects": []})
}

test_code_missing_fact if {
	d := decide("organization:delete", acme("organization", {}), alice, org_exists)
	coded(d, "missing_fact", {"fact": "organization.project_count"})
}

test_code_granted_for_an_organization_deletion if {
	d := decide("organization:delete", acme("organization", {}), alice, with_projects(0, []))
	coded(d, "granted", {"action": "organization:delete", "permission": "*", "organization": "acme"})
}
