# Organization-scoped actions: membership isolates organizations (R3), the member's
# precomputed permissions decide (R4), an organization with projects is not deleted (R5),
# and a resource addressed under the wrong organization is not found (R7).
package portcullis

organization := input.resource.org

membership := input.subject.memberships[organization]

organization_decision := organization_not_found if {
	not lower_case_slug
} else := not_a_member_decision if {
	not membership
} else := organization_not_found if {
	not input.facts.organization.exists == true
} else := resource_not_found if {
	count(missing_parameters) > 0
} else := allowed("member_may_leave", {"organization": organization}, sprintf("any member may leave organization '%s'", [organization])) if {
	input.action == "member:leave"
} else := denied(403, "builtin_role_protected", {"organization": organization, "role": param("role")}, sprintf("the built-in role '%s' cannot be changed or deleted", [param("role")])) if {
	input.action in {"role:update", "role:delete"}
	input.facts.role.builtin == true
} else := denied(403, "missing_permission", {"permission": object.get(input, "action", null), "organization": organization}, missing_permission_reason) if {
	not granted_by
} else := organization_delete_decision if {
	input.action == "organization:delete"
} else := granted

organization_not_found := denied(404, "organization_not_found", {"organization": organization}, sprintf("organization '%s' not found", [organization]))

# Slugs are lower-case by a database constraint, so `/orgs/ACME` names no organization;
# saying so tells no one anything about the organizations that exist.
lower_case_slug if organization == lower(organization)

# The same answer whether or not the organization exists: non-members learn nothing (R3).
# Someone without any organization is told what they can do instead (R2).
not_a_member_decision := denied(403, "member_of_no_organization", {"organization": organization}, "you belong to no organization; create one or accept an invitation to join one") if {
	count(object.get(input.subject, "memberships", {})) == 0
} else := denied(403, "not_a_member", {"organization": organization}, sprintf("you are not a member of organization '%s'", [organization]))

# R7: every resource named in the path must belong to the organization in the path. The
# gateway loads a fact named after each parameter (`facts.project` for `{project}`); a
# parameter without its fact is not found, unless the route leaves it to the upstream.
missing_parameters contains name if {
	some name, _ in input.resource
	not name in {"type", "org", "role", "user"}
	not checked_by_upstream(name)
	not found_in_organization(name)
}

# Built-in roles belong to no organization, and so to every one.
missing_parameters contains "role" if {
	input.resource.role
	not checked_by_upstream("role")
	not found_in_organization("role")
	not builtin_role
}

# A user in an organization's path (a member, a team's member) must be its member.
missing_parameters contains "user" if {
	input.resource.user
	not checked_by_upstream("user")
	not input.facts.member.exists == true
}

# One reason per parameter; params name them all: {"organization": …, "resources": {"project": "api"}}.
resource_not_found := {
	"allow": false,
	"status": 404,
	"reasons": sort([not_found_reason(name) | some name in missing_parameters]),
	"code": "resource_not_found",
	"params": {"organization": organization, "resources": {name: input.resource[name] | some name in missing_parameters}},
}

not_found_reason(name) := sprintf("user '%s' is not a member of organization '%s'", [input.resource.user, organization]) if {
	name == "user"
} else := sprintf("%s '%s' not found in organization '%s'", [name, input.resource[name], organization])

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
	some permission in [input.action, concat("", [split(input.action, ":")[0], ":*"]), "*"]
	permission in membership.permissions
][0]

# Where the allow came from: the permission that matched and the organization it holds in.
# concat, not sprintf, here and in granted_by: both run for every allowed request, and
# sprintf is not native to the WebAssembly module (each call leaves it for the SDK's
# JavaScript and back, about 10 µs). Every value is a string: the action (split needs one),
# the permission, and the organization (a key of the memberships object).
granted := allowed(
	"granted",
	{"action": input.action, "permission": granted_by, "organization": organization},
	concat("", ["granted by permission '", granted_by, "' in organization '", organization, "'"]),
)

missing_permission_reason := sprintf("missing permission '%s' in organization '%s' (your roles there: %s)", [input.action, organization, roles]) if {
	roles := concat(", ", membership.roles)
} else := sprintf("missing permission '%v' in organization '%s'", [object.get(input, "action", null), organization])

# R5: the permission alone is not enough while projects remain; the permission is checked
# first, so only its holders learn project names.
organization_delete_decision := denied(500, "missing_fact", {"fact": "organization.project_count"}, "the policy input lacks facts.organization.project_count") if {
	not project_count_loaded
} else := denied(409, "organization_has_projects", projects_params, sprintf("organization '%s' still has %s (%s); delete them first", [
	organization,
	quantity(input.facts.organization.project_count, "project", "projects"),
	project_names,
])) if {
	input.facts.organization.project_count > 0
} else := granted

# The slugs the gateway loaded (at most a few): `projects` may be shorter than `project_count`.
projects_params := {
	"organization": organization,
	"project_count": input.facts.organization.project_count,
	"projects": object.get(input.facts.organization, "project_slugs", []),
}

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
