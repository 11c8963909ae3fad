package portcullis_test

invitation(fields) := {"invitation": object.union(
	{"exists": true, "email": "carol@example.com", "accepted": false, "organization": "acme"},
	fields,
)}

accept(facts) := decide("invitation:accept", {"type": "invitation", "invitation": "inv-1"}, carol, facts)

test_allows_a_user_without_organizations_to_create_one if {
	d := decide("organization:create", {"type": "organization"}, carol, {})
	allows(d)
	d.reasons == ["any registered user may create an organization"]
}

test_allows_any_registered_user_to_list_their_organizations if {
	d := decide("organization:list", {"type": "organization"}, carol, {})
	allows(d)
	d.reasons == ["any registered user may list the organizations they belong to"]
	allows(decide("organization:list", {"type": "organization"}, alice, {}))
}

test_allows_accepting_an_invitation_addressed_to_the_user if {
	d := accept(invitation({}))
	allows(d)
	d.reasons == ["invitation 'inv-1' is addressed to your e-mail address"]
}

test_compares_invitation_e_mail_addresses_case_insensitively if {
	allows(accept(invitation({"email": "CAROL@example.COM"})))
}

test_denies_accepting_a_missing_invitation if {
	denies(accept(invitation({"exists": false})), 404, "invitation 'inv-1' not found")
}

test_denies_accepting_an_invitation_without_facts if {
	denies(accept({}), 404, "invitation 'inv-1' not found")
}

test_names_no_invitation_when_the_route_has_no_invitation_parameter if {
	d := decide("invitation:accept", {"type": "invitation"}, carol, {})
	denies(d, 404, "invitation '?' not found")
}

test_denies_accepting_an_invitation_twice if {
	denies(accept(invitation({"accepted": true})), 409, "invitation 'inv-1' has already been accepted")
}

test_denies_accepting_an_invitation_whose_state_is_unknown if {
	denies(accept({"invitation": {"exists": true, "email": "carol@example.com"}}), 409, "invitation 'inv-1' has already been accepted")
}

test_denies_accepting_an_invitation_addressed_to_someone_else if {
	denies(accept(invitation({"email": "mallory@example.com"})), 403, "invitation 'inv-1' is addressed to another e-mail address")
}

test_denies_accepting_an_invitation_that_has_no_e_mail if {
	denies(accept(invitation({"email": null})), 403, "invitation 'inv-1' is addressed to another e-mail address")
}

test_denies_accepting_an_invitation_for_a_user_without_e_mail if {
	d := decide("invitation:accept", {"type": "invitation", "invitation": "inv-1"}, object.union(carol, {"email": null}), invitation({}))
	denies(d, 403, "your account has no e-mail address, so no invitation is addressed to you")
}

test_allows_reading_the_own_profile_as_me if {
	d := decide("profile:read", {"type": "profile", "user": "me"}, carol, {})
	allows(d)
	d.reasons == ["a user may read and update their own profile"]
}

test_allows_updating_the_own_profile_by_id if {
	allows(decide("profile:update", {"type": "profile", "user": carol.id}, carol, {}))
}

test_denies_reading_another_users_profile if {
	d := decide("profile:read", {"type": "profile", "user": alice.id}, carol, {})
	denies(d, 403, "a user may read and update only their own profile")
}

test_denies_updating_another_users_profile_even_for_an_organization_admin if {
	d := decide("profile:update", {"type": "profile", "user": carol.id}, alice, {})
	denies(d, 403, "a user may read and update only their own profile")
}

test_denies_a_profile_route_without_a_user if {
	denies(decide("profile:read", {"type": "profile"}, carol, {}), 403, "a user may read and update only their own profile")
}

test_denies_accepting_an_invitation_for_a_subject_without_an_e_mail_claim if {
	subject := {"id": carol.id, "sub": carol.sub, "memberships": {}}
	d := decide("invitation:accept", {"type": "invitation", "invitation": "inv-1"}, subject, invitation({}))
	denies(d, 403, "your account has no e-mail address, so no invitation is addressed to you")
}

test_allows_the_own_profile_through_a_users_me_route if {
	d := data.portcullis.decision with input as {
		"request": {"id": "req-1", "method": "POST", "path": "/users/me/password-reset", "route": "/users/me/password-reset"},
		"action": "profile:update",
		"resource": {"type": "profile"},
		"subject": carol,
		"facts": {},
	}
	d.allow == true
}

test_allows_reading_the_own_profile_at_users_me if {
	d := data.portcullis.decision with input as {
		"request": {"id": "req-1", "method": "GET", "path": "/users/me", "route": "/users/me"},
		"action": "profile:read",
		"resource": {"type": "profile"},
		"subject": carol,
		"facts": {},
	}
	d.allow == true
}

test_denies_a_profile_route_without_a_user_that_is_not_a_me_route if {
	d := data.portcullis.decision with input as {
		"request": {"id": "req-1", "method": "GET", "path": "/users", "route": "/users/{user}/x"},
		"action": "profile:read",
		"resource": {"type": "profile"},
		"subject": carol,
		"facts": {},
	}
	d.allow == false
}
