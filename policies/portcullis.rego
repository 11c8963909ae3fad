# Portcullis' default policy: the single entrypoint `portcullis/decision` (design §3.4).
# Each request gets one decision: the first branch of an else-chain whose condition holds.
# Conditions are written as "not <what must hold>" so that missing or malformed input
# denies, and every reason is total: an undefined branch value would fall through to the
# next branch instead of denying. Whatever no rule allows is denied (R8).
package portcullis

default decision := {"allow": false, "status": 403, "reasons": ["no rule allows this request"], "code": "no_rule", "params": {}}

decision := denied(401, "unauthenticated", {}, "the request has no authenticated subject") if {
	not authenticated
} else := registration_decision if {
	input.action == "profile:register"
} else := denied(403, "not_registered", {"subject": input.subject.sub}, sprintf("no user is registered for subject '%s'; register first: PUT /users/me", [input.subject.sub])) if {
	not registered
} else := personal_decision if {
	personal_action
} else := organization_decision if {
	organization_scoped
} else := denied(403, "no_rule_outside_organization", {"action": input.action}, sprintf("no rule allows '%s' outside an organization", [input.action]))

# R1, defence in depth: the gateway answers 401 itself before asking the policy.
authenticated if {
	is_string(input.subject.sub)
	input.subject.sub != ""
}

# False for a verified token whose subject has no users row.
registered if is_string(input.subject.id)

organization_scoped if is_string(input.resource.org)

# Every outcome carries a stable `code` and its `params` beside the human reason, so records
# can be counted by reason (README "Decision codes" lists them).
allowed(code, params, reason) := {"allow": true, "status": 200, "reasons": [reason], "code": code, "params": params}

denied(status, code, params, reason) := {"allow": false, "status": status, "reasons": [reason], "code": code, "params": params}

# A path parameter for a reason; "?" when the route has none, so the reason is defined.
param(name) := value if {
	value := input.resource[name]
	is_string(value)
} else := "?"
