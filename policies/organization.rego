# Organization-scoped actions: membership isolates organizations (R3), the member's
# precomputed permissions decide (R4), an organization with projects is not deleted (R5),
# and a resource addressed under the wrong organization is not found (R7).
package portcullis

organization := input.resource.org

membership := input.subject.memberships[organization]

organization_decision := denied(404, sprintf("organization '%s' not found", [organization])) if {
	not lower_case_slug
} else := denied(403, not_a_member_reason) if {
	not membership
} else := denied(404, sprintf("organization '%s' not found", [organization])) if {
	not input.facts.organization.exists == true
} else := {"allow": false, "status": 404, "reasons": sort(not_found)} if {
	count(not_found) > 0
} else := allowed(sprintf("any member may leave organization '%s'", [organization])) if {
	input.action == "member:leave"
} else := denied(403, sprintf("the built-in role '%s' cannot be changed or deleted", [param("role")])) if {
	input.action in {"role:update", "role:delete"}
	input.facts.role.builtin == true
} else := denied(403, missing_permission_reason) if {
	not granted_by
} else := organization_delete_decision if {
	input.action == "organization:delete"
} else := allowed(granted_reason)

# Slugs are lower-case by a database constraint, so `/orgs/ACME` names no organization;
# saying so tells no one anything about the organizations that exist.
lower_case_slug if organization == lower(organization)

# The same answer whether or not the organization exists: non-members learn nothing (R3).
# Someone without any organization is told what they can do instead (R2).
not_a_member_reason := "you belong to no organization; create one or accept an invitation to join one" if {
	count(object.get(input.subject, "memberships", {})) == 0
} else := sprintf("you are not a member of organization '%s'", [organization])

# R7: every resource named in the path must belong to the organization in the path. The
# gateway loads a fact named after each parameter (`facts.project` for `{project}`); a
# parameter without its fact is not found, unless the route leaves it to the upstream.
not_found contains sprintf("%s '%s' not found in organization '%s'", [name, value, organization]) if {
	some name, value in input.resource
	not name in {"type", "org", "role", "user"}
	not checked_by_upstream(name)
	not found_in_organization(name)
}

# Built-in roles belong to no organization, and so to every one.
not_found contains sprintf("role '%s' not found in organization '%s'", [input.resource.role, organization]) if {
	input.resource.role
	not checked_by_upstream("role")
	not found_in_organization("role")
	not builtin_role
}

# A user in an organization's path (a member, a team's member) must be its member.
not_found contains sprintf("user '%s' is not a member of organization '%s'", [input.resource.user, organization]) if {
	input.resource.user
	not checked_by_upstream("user")
	not input.facts.member.exists == true
}

# The route's `checked_by: upstream` parameters: the upstream checks them against the
# assertion's org claim.
checked_by_upstream(name) if name in input.request.checked_by_upstream

found_in_organization(kind) if {
	input.facts[kind].exists == true
	input.facts[kind].in_organization == true
}

builtin_role if {
	input.facts.role.exists == true
	input.facts.role.builtin == true
}

# R4: "*", the action itself, or every verb of the action's resource ("project:*").
granted_by := [permission |
	some permission in [input.action, sprintf("%s:*", [split(input.action, ":")[0]]), "*"]
	permission in membership.permissions
][0]

granted_reason := sprintf("granted by permission '%s' in organization '%s'", [granted_by, organization])

missing_permission_reason := sprintf("missing permission '%s' in organization '%s' (your roles there: %s)", [input.action, organization, roles]) if {
	roles := concat(", ", membership.roles)
} else := sprintf("missing permission '%v' in organization '%s'", [object.get(input, "action", null), organization])

# R5: the permission alone is not enough while projects remain; the permission is checked
# first, so only its holders learn project names.
organization_delete_decision := denied(500, "the policy input lacks facts.organization.project_count") if {
	not project_count_loaded
} else := denied(409, sprintf("organization '%s' still has %s (%s); delete them first", [
	organization,
	quantity(input.facts.organization.project_count, "project", "projects"),
	project_names,
])) if {
	input.facts.organization.project_count > 0
} else := allowed(granted_reason)

project_count_loaded if is_number(input.facts.organization.project_count)

# The gateway loads at most a few slugs; "…" marks the ones left out.
project_names := concat(", ", slugs) if {
	slugs := input.facts.organization.project_slugs
	count(slugs) >= input.facts.organization.project_count
} else := concat(", ", array.concat(input.facts.organization.project_slugs, ["…"])) if {
	count(input.facts.organization.project_slugs) > 0
} else := "names not loaded"

quantity(1, singular, _) := sprintf("1 %s", [singular])

quantity(n, _, plural) := sprintf("%v %s", [n, plural]) if n != 1
