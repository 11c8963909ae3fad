package portcullis_test

acme(type, params) := object.union({"type": type, "org": "acme"}, params)

found := {"exists": true, "in_organization": true}

elsewhere := {"exists": true, "in_organization": false}

missing := {"exists": false, "in_organization": false}

# R3, R4

test_allows_a_member_to_read_with_a_default_role_permission if {
	d := decide("project:read", acme("project", {"project": "api"}), bob, object.union(org_exists, {"project": found}))
	allows(d)
	d.reasons == ["granted by permission 'project:read' in organization 'acme'"]
}

test_allows_an_action_granted_by_a_resource_wildcard if {
	d := decide("pipeline:run", acme("pipeline", {"project": "api"}), bob, object.union(org_exists, {"project": found}))
	allows(d)
	d.reasons == ["granted by permission 'pipeline:*' in organization 'acme'"]
}

test_allows_an_organization_admin_everything_in_their_organization if {
	d := decide("credential:delete", acme("credential", {"credential": "c-1"}), alice, object.union(org_exists, {"credential": found}))
	allows(d)
	d.reasons == ["granted by permission '*' in organization 'acme'"]
}

test_denies_a_member_without_the_permission if {
	d := decide("project:delete", acme("project", {"project": "api"}), bob, object.union(org_exists, {"project": found}))
	denies(d, 403, "missing permission 'project:delete' in organization 'acme' (your roles there: default, deployer)")
}

test_a_resource_wildcard_grants_only_its_own_resource if {
	subject := object.union(bob, {"memberships": {"acme": object.union(bob.memberships.acme, {"permissions": ["project:*"]})}})
	allows(decide("project:delete", acme("project", {"project": "api"}), subject, object.union(org_exists, {"project": found})))
	not decide("pipeline:run", acme("pipeline", {"project": "api"}), subject, object.union(org_exists, {"project": found})).allow
}

test_names_the_missing_permission_when_the_membership_lists_no_roles if {
	subject := {"id": bob.id, "sub": bob.sub, "email": bob.email, "memberships": {"acme": {"permissions": []}}}
	d := decide("organization:read", acme("organization", {}), subject, org_exists)
	denies(d, 403, "missing permission 'organization:read' in organization 'acme'")
}

test_applies_the_generic_rule_to_custom_organization_actions if {
	analyst := object.union(bob, {"memberships": {"acme": object.union(bob.memberships.acme, {"permissions": ["report:read"]})}})
	allows(decide("report:read", acme("report", {}), analyst, org_exists))
	denies(decide("report:read", acme("report", {}), bob, org_exists), 403, "missing permission 'report:read' in organization 'acme' (your roles there: default, deployer)")
}

test_admin_rights_in_one_organization_grant_nothing_in_another if {
	d := decide("project:delete", {"type": "project", "org": "globex", "project": "api"}, alice, object.union(org_exists, {"project": found}))
	denies(d, 403, "missing permission 'project:delete' in organization 'globex' (your roles there: default)")
}

test_denies_a_non_member if {
	d := decide("organization:read", {"type": "organization", "org": "globex"}, bob, org_exists)
	denies(d, 403, "you are not a member of organization 'globex'")
}

test_does_not_tell_non_members_whether_the_organization_exists if {
	exists := decide("organization:read", {"type": "organization", "org": "initech"}, bob, org_exists)
	absent := decide("organization:read", {"type": "organization", "org": "initech"}, bob, {"organization": {"exists": false}})
	exists == absent
}

test_tells_a_user_without_organizations_how_to_join_one if {
	d := decide("project:read", acme("project", {"project": "api"}), carol, object.union(org_exists, {"project": found}))
	denies(d, 403, "you belong to no organization; create one or accept an invitation to join one")
}

test_denies_an_empty_organization_slug if {
	denies(decide("organization:read", {"type": "organization", "org": ""}, alice, {}), 403, "you are not a member of organization ''")
}

test_denies_an_upper_case_organization_slug_as_not_found if {
	denies(decide("organization:read", {"type": "organization", "org": "ACME"}, alice, org_exists), 404, "organization 'ACME' not found")
	denies(decide("organization:read", {"type": "organization", "org": "Acme"}, carol, {}), 404, "organization 'Acme' not found")
}

test_denies_a_member_of_an_organization_that_no_longer_exists if {
	d := decide("organization:read", acme("organization", {}), alice, {"organization": {"exists": false}})
	denies(d, 404, "organization 'acme' not found")
}

test_denies_when_organization_facts_are_missing if {
	denies(decide("organization:read", acme("organization", {}), alice, {}), 404, "organization 'acme' not found")
}

# R7

test_denies_a_project_of_another_organization if {
	d := decide("project:read", acme("project", {"project": "globex-api"}), alice, object.union(org_exists, {"project": elsewhere}))
	denies(d, 404, "project 'globex-api' not found in organization 'acme'")
}

test_denies_a_missing_project if {
	d := decide("pipeline:read", acme("pipeline", {"project": "nope"}), alice, object.union(org_exists, {"project": missing}))
	denies(d, 404, "project 'nope' not found in organization 'acme'")
}

test_denies_a_project_whose_facts_were_not_loaded if {
	denies(decide("project:read", acme("project", {"project": "api"}), alice, org_exists), 404, "project 'api' not found in organization 'acme'")
}

test_denies_a_team_of_another_organization if {
	d := decide("team:update", acme("team", {"team": "ops"}), alice, object.union(org_exists, {"team": elsewhere}))
	denies(d, 404, "team 'ops' not found in organization 'acme'")
}

test_allows_a_team_of_the_organization if {
	allows(decide("team:update", acme("team", {"team": "ops"}), alice, object.union(org_exists, {"team": found})))
}

test_denies_a_role_of_another_organization if {
	d := decide("role:read", acme("role", {"role": "deployer"}), alice, object.union(org_exists, {"role": object.union(elsewhere, {"builtin": false})}))
	denies(d, 404, "role 'deployer' not found in organization 'acme'")
}

test_allows_a_built_in_role_in_any_organization if {
	role := {"exists": true, "in_organization": false, "builtin": true}
	allows(decide("role:read", acme("role", {"role": "default"}), alice, object.union(org_exists, {"role": role})))
}

test_denies_a_user_who_is_not_a_member if {
	d := decide("member:remove", acme("member", {"user": carol.id}), alice, object.union(org_exists, {"member": {"exists": false}}))
	denies(d, 404, sprintf("user '%s' is not a member of organization 'acme'", [carol.id]))
}

test_allows_removing_a_member if {
	allows(decide("member:remove", acme("member", {"user": bob.id}), alice, object.union(org_exists, {"member": {"exists": true}})))
}

test_denies_a_team_member_who_is_not_a_member_of_the_organization if {
	facts := object.union(org_exists, {"team": found, "member": {"exists": false}})
	d := decide("team:update", acme("team", {"team": "ops", "user": carol.id}), alice, facts)
	denies(d, 404, sprintf("user '%s' is not a member of organization 'acme'", [carol.id]))
}

test_denies_a_team_member_whose_membership_was_not_loaded if {
	d := decide("team:read", acme("team", {"team": "ops", "user": bob.id}), alice, object.union(org_exists, {"team": found}))
	denies(d, 404, sprintf("user '%s' is not a member of organization 'acme'", [bob.id]))
}

test_allows_a_team_member_who_is_a_member_of_the_organization if {
	allows(decide("team:update", acme("team", {"team": "ops", "user": bob.id}), alice, object.union(org_exists, {"team": found, "member": {"exists": true}})))
}

test_denies_a_credential_of_another_organization if {
	d := decide("credential:read", acme("credential", {"credential": "Key_AbC"}), alice, object.union(org_exists, {"credential": elsewhere}))
	denies(d, 404, "credential 'Key_AbC' not found in organization 'acme'")
}

test_denies_a_missing_credential if {
	d := decide("credential:delete", acme("credential", {"credential": "nope"}), alice, object.union(org_exists, {"credential": missing}))
	denies(d, 404, "credential 'nope' not found in organization 'acme'")
}

test_denies_a_parameter_the_gateway_has_no_fact_for if {
	d := decide("report:read", acme("report", {"report": "q3"}), alice, org_exists)
	denies(d, 404, "report 'q3' not found in organization 'acme'")
}

# `checked_by: upstream`: the route leaves these parameters to the upstream.
upstream_checks(names) := {
	"request": {"id": "req-1", "method": "GET", "path": "/", "route": "/", "checked_by_upstream": names},
	"action": "credential:read",
	"subject": alice,
}

test_allows_parameters_the_route_leaves_to_the_upstream if {
	resource := acme("credential", {"credential": "aws", "report": "q3", "role": "ghost", "user": carol.id})
	request := upstream_checks(["credential", "report", "role", "user"])
	d := data.portcullis.decision with input as object.union(request, {"resource": resource, "facts": org_exists})
	allows(d)
}

test_checks_the_parameters_the_route_does_not_leave_to_the_upstream if {
	request := upstream_checks(["report"])
	d := data.portcullis.decision with input as object.union(request, {"resource": acme("credential", {"credential": "aws", "report": "q3"}), "facts": org_exists})
	denies(d, 404, "credential 'aws' not found in organization 'acme'")
}

test_lists_every_resource_that_is_not_in_the_organization if {
	d := decide("team:update", acme("team", {"team": "ops", "project": "api"}), alice, object.union(org_exists, {"team": missing, "project": elsewhere}))
	d.status == 404
	d.reasons == ["project 'api' not found in organization 'acme'", "team 'ops' not found in organization 'acme'"]
}

test_checks_resources_before_permissions if {
	d := decide("project:delete", acme("project", {"project": "nope"}), bob, object.union(org_exists, {"project": missing}))
	d.status == 404
}

# Built-in roles

test_denies_changing_a_built_in_role_even_to_an_admin if {
	role := {"exists": true, "in_organization": false, "builtin": true}
	d := decide("role:update", acme("role", {"role": "default"}), alice, object.union(org_exists, {"role": role}))
	denies(d, 403, "the built-in role 'default' cannot be changed or deleted")
}

test_denies_deleting_a_built_in_role if {
	role := {"exists": true, "in_organization": false, "builtin": true}
	d := decide("role:delete", acme("role", {"role": "organization-admin"}), alice, object.union(org_exists, {"role": role}))
	denies(d, 403, "the built-in role 'organization-admin' cannot be changed or deleted")
}

test_allows_changing_a_role_of_the_organization if {
	role := object.union(found, {"builtin": false})
	allows(decide("role:update", acme("role", {"role": "deployer"}), alice, object.union(org_exists, {"role": role})))
}

# R5

with_projects(n, slugs) := {"organization": {"exists": true, "project_count": n, "project_slugs": slugs}}

test_allows_deleting_an_organization_without_projects if {
	d := decide("organization:delete", acme("organization", {}), alice, with_projects(0, []))
	allows(d)
	d.reasons == ["granted by permission '*' in organization 'acme'"]
}

test_denies_deleting_an_organization_that_still_has_projects if {
	d := decide("organization:delete", acme("organization", {}), alice, with_projects(2, ["api", "web"]))
	denies(d, 409, "organization 'acme' still has 2 projects (api, web); delete them first")
}

test_counts_a_single_remaining_project_in_the_singular if {
	d := decide("organization:delete", acme("organization", {}), alice, with_projects(1, ["api"]))
	denies(d, 409, "organization 'acme' still has 1 project (api); delete them first")
}

test_marks_remaining_projects_that_are_not_named if {
	d := decide("organization:delete", acme("organization", {}), alice, with_projects(7, ["a", "b", "c", "d", "e"]))
	denies(d, 409, "organization 'acme' still has 7 projects (a, b, c, d, e, …); delete them first")
}

test_denies_deleting_an_organization_whose_project_names_were_not_loaded if {
	d := decide("organization:delete", acme("organization", {}), alice, {"organization": {"exists": true, "project_count": 3}})
	denies(d, 409, "organization 'acme' still has 3 projects (names not loaded); delete them first")
}

test_denies_deleting_an_organization_whose_project_count_was_not_loaded if {
	d := decide("organization:delete", acme("organization", {}), alice, org_exists)
	denies(d, 500, "the policy input lacks facts.organization.project_count")
}

test_tells_members_without_the_permission_nothing_about_projects if {
	d := decide("organization:delete", acme("organization", {}), bob, with_projects(2, ["api", "web"]))
	denies(d, 403, "missing permission 'organization:delete' in organization 'acme' (your roles there: default, deployer)")
}

# Leaving an organization (DELETE /orgs/{org}/members/me)

test_allows_any_member_to_leave_without_a_permission if {
	d := decide("member:leave", acme("member", {}), bob, org_exists)
	allows(d)
	d.reasons == ["any member may leave organization 'acme'"]
}

test_denies_leaving_an_organization_one_is_not_a_member_of if {
	denies(decide("member:leave", {"type": "member", "org": "globex"}, bob, org_exists), 403, "you are not a member of organization 'globex'")
}

test_denies_leaving_an_organization_that_does_not_exist if {
	denies(decide("member:leave", acme("member", {}), bob, {"organization": {"exists": false}}), 404, "organization 'acme' not found")
}

# Invitations under an organization (R7)

test_allows_revoking_an_invitation_of_the_organization if {
	d := decide("member:invite", acme("invitation", {"invitation": "inv-1"}), alice, object.union(org_exists, {"invitation": found}))
	allows(d)
}

test_denies_revoking_an_invitation_of_another_organization_as_not_found if {
	d := decide("member:invite", acme("invitation", {"invitation": "inv-1"}), alice, object.union(org_exists, {"invitation": elsewhere}))
	denies(d, 404, "invitation 'inv-1' not found in organization 'acme'")
}

test_denies_inviting_without_the_permission if {
	d := decide("member:invite", acme("invitation", {}), bob, org_exists)
	denies(d, 403, "missing permission 'member:invite' in organization 'acme' (your roles there: default, deployer)")
}

# Roles attached to a team (R7 for {role} under /orgs/{org}/teams/{team}/roles/{role})

team_role(role_fact) := object.union(org_exists, {"team": found, "role": role_fact})

test_allows_attaching_a_built_in_role_to_a_team if {
	allows(decide("team:update", acme("team", {"team": "ops", "role": "default"}), alice, team_role({"exists": true, "in_organization": true, "builtin": true})))
}

test_allows_attaching_a_role_of_the_organization_to_a_team if {
	allows(decide("team:update", acme("team", {"team": "ops", "role": "deployer"}), alice, team_role(object.union(found, {"builtin": false}))))
}

test_denies_attaching_a_role_of_another_organization_to_a_team if {
	d := decide("team:update", acme("team", {"team": "ops", "role": "spy"}), alice, team_role(object.union(elsewhere, {"builtin": false})))
	denies(d, 404, "role 'spy' not found in organization 'acme'")
}

# The organization's directory change log

test_allows_an_organization_admin_to_read_the_audit_events if {
	d := decide("audit:read", acme("audit", {}), alice, org_exists)
	allows(d)
	d.reasons == ["granted by permission '*' in organization 'acme'"]
}

test_denies_a_default_member_the_audit_events if {
	d := decide("audit:read", acme("audit", {}), bob, org_exists)
	denies(d, 403, "missing permission 'audit:read' in organization 'acme' (your roles there: default, deployer)")
}
