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

test_denies_a_subject_without_a_users_row if {
	d := decide("organization:create", {"type": "organization"}, object.union(carol, {"id": null}), {})
	denies(d, 403, "no user is registered for subject 'idp|carol'")
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
	}
}
