# Actions a registered user may take without belonging to any organization (R2), their
# own profile (R6), and registering. None of them needs a permission.
package portcullis

personal_action if input.action in {"organization:create", "organization:list", "invitation:accept", "profile:read", "profile:update"}

personal_decision := allowed("open_to_registered_users", {"action": input.action}, "any registered user may create an organization") if {
	input.action == "organization:create"
} else := allowed("open_to_registered_users", {"action": input.action}, "any registered user may list the organizations they belong to") if {
	input.action == "organization:list"
} else := invitation_decision if {
	input.action == "invitation:accept"
} else := profile_decision

invitation_params := {"invitation": param("invitation")}

invitation_decision := denied(404, "invitation_not_found", invitation_params, sprintf("invitation '%s' not found", [param("invitation")])) if {
	not input.facts.invitation.exists == true
} else := denied(409, "invitation_already_accepted", invitation_params, sprintf("invitation '%s' has already been accepted", [param("invitation")])) if {
	not input.facts.invitation.accepted == false
} else := denied(403, "no_email_address", invitation_params, "your account has no e-mail address, so no invitation is addressed to you") if {
	not has_email
} else := denied(403, "invitation_not_addressed_to_you", invitation_params, sprintf("invitation '%s' is addressed to another e-mail address", [param("invitation")])) if {
	not addressed_to_subject
} else := allowed("invitation_addressed_to_you", invitation_params, sprintf("invitation '%s' is addressed to your e-mail address", [param("invitation")]))

has_email if is_string(input.subject.email)

# E-mail addresses are compared case-insensitively, as mail providers do in practice.
addressed_to_subject if lower(input.facts.invitation.email) == lower(input.subject.email)

profile_decision := allowed("own_profile", {"action": input.action}, "a user may read and update their own profile") if {
	own_profile
} else := denied(403, "profile_not_own", {"action": input.action}, "a user may read and update only their own profile")

# The one action open to a verified token whose subject has no users row yet; a registered
# user registering again only refreshes their row (idempotent).
registration_decision := allowed("own_registration", {}, "an authenticated subject may register their own user") if {
	own_profile
} else := denied(403, "registration_not_own", {}, "a subject may register only their own user, at PUT /users/me")

own_profile if input.resource.user == "me"

# `/users/me` routes carry no user parameter: the route itself names the caller.
own_profile if {
	not input.resource.user
	me_route
}

me_route if input.request.route == "/users/me"

me_route if startswith(input.request.route, "/users/me/")

own_profile if input.resource.user == input.subject.id
