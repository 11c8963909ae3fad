package portcullis_test

import data.portcullis

test_denies_a_request_without_a_subject if {
	d := portcullis.decision with input as {"action": "organization:read", "resource": {"type": "organization", "org": "acme"}}
	denies(d, 401, "the request has no authenticated subject")
}

test_denies_a_subject_with_an_empty_sub if {
	d := decide("organization:create", {"type": "organization"}, object.union(carol, {"sub": ""}), {})
	denies(d, 401, "the request has no authenticated subject")
}

unregistered := object.union(carol, {"id": null})

test_denies_a_subject_without_a_users_row_and_tells_them_to_register if {
	d := decide("organization:create", {"type": "organization"}, unregistered, {})
	denies(d, 403, "no user is registered for subject 'idp|carol'; register first: PUT /users/me")
}

test_denies_an_unregistered_subject_their_own_profile_and_every_organization_action if {
	reason := "no user is registered for subject 'idp|carol'; register first: PUT /users/me"
	denies(decide("profile:read", {"type": "profile", "user": "me"}, unregistered, {}), 403, reason)
	denies(decide("organization:list", {"type": "organization"}, unregistered, {}), 403, reason)
	denies(decide("invitation:accept", {"type": "invitation", "invitation": "inv-1"}, unregistered, {}), 403, reason)
	denies(decide("member:leave", {"type": "member", "org": "acme"}, unregistered, org_exists), 403, reason)
}

# PUT /users/me: the one action a verified subject without a users row may take.
register(subject) := decision if {
	decision := portcullis.decision with input as {
		"request": {"id": "req-1", "method": "PUT", "path": "/users/me", "route": "/users/me"},
		"action": "profile:register",
		"resource": {"type": "profile"},
		"subject": subject,
		"facts": {},
	}
}

test_allows_an_unregistered_subject_to_register if {
	d := register(unregistered)
	allows(d)
	d.reasons == ["an authenticated subject may register their own user"]
}

test_allows_a_registered_user_to_register_again if {
	allows(register(carol))
}

test_allows_registering_without_a_subject_id_member if {
	allows(register({"sub": "idp|new", "memberships": {}}))
}

test_denies_registering_without_an_authenticated_subject if {
	denies(register({"id": null, "sub": "", "memberships": {}}), 401, "the request has no authenticated subject")
}

test_denies_registering_someone_else if {
	d := decide("profile:register", {"type": "profile", "user": alice.id}, unregistered, {})
	denies(d, 403, "a subject may register only their own user, at PUT /users/me")
}

test_denies_an_unknown_action_outside_an_organization if {
	d := decide("billing:read", {"type": "billing"}, alice, {})
	denies(d, 403, "no rule allows 'billing:read' outside an organization")
}

test_denies_an_org_action_on_a_route_without_an_organization if {
	d := decide("project:read", {"type": "project"}, alice, {})
	denies(d, 403, "no rule allows 'project:read' outside an organization")
}

test_denies_a_request_without_an_action_by_default if {
	d := portcullis.decision with input as {"resource": {"type": "organization"}, "subject": alice}
	denies(d, 403, "no rule allows this request")
}

test_every_decision_has_the_same_shape if {
	empty := portcullis.decision with input as {}
	every d in [
		empty,
		decide("organization:read", {"type": "organization", "org": "acme"}, alice, org_exists),
		decide("organization:read", {"type": "organization", "org": "acme"}, carol, org_exists),
	] {
		is_boolean(d.allow)
		is_number(d.status)
		count(d.reasons) > 0
		every reason in d.reasons {
			is_string(reason)
		}
		regex.match(`^[a-z][a-z0-9_]*$`, d.code)
		is_object(d.params)
	}
}
