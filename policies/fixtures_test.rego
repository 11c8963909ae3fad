# Shared inputs for the policy tests: a few people, their memberships, and a way to ask
# the policy about one request.
package portcullis_test

import data.portcullis

read_only := ["member:read", "organization:read", "project:read", "team:read"]

default_member := {"role": "default", "teams": [], "roles": ["default"], "permissions": read_only}

admin_member := {"role": "organization-admin", "teams": [], "roles": ["organization-admin"], "permissions": ["*"]}

# Admin of acme, plain member of globex.
alice := {
	"id": "0b6c2f7e-0000-4000-8000-00000000a11c",
	"sub": "idp|alice",
	"email": "Alice@Example.com",
	"memberships": {"acme": admin_member, "globex": default_member},
}

# Member of acme through the default role, plus a deployer team.
bob := {
	"id": "0b6c2f7e-0000-4000-8000-000000000b0b",
	"sub": "idp|bob",
	"email": "bob@example.com",
	"memberships": {"acme": {
		"role": "default",
		"teams": ["ops"],
		"roles": ["default", "deployer"],
		"permissions": array.concat(read_only, ["pipeline:*"]),
	}},
}

# Registered, but in no organization (R2).
carol := {"id": "0b6c2f7e-0000-4000-8000-0000000ca201", "sub": "idp|carol", "email": "carol@example.com", "memberships": {}}

org_exists := {"organization": {"exists": true}}

decide(action, resource, subject, facts) := decision if {
	decision := portcullis.decision with input as {
		"request": {"id": "req-1", "method": "GET", "path": "/", "route": "/"},
		"action": action,
		"resource": resource,
		"subject": subject,
		"facts": facts,
	}
}

allows(decision) if {
	decision.allow == true
	decision.status == 200
}

denies(decision, status, reason) if {
	decision.allow == false
	decision.status == status
	decision.reasons == [reason]
}

# The decision's stable code and its params (README "Decision codes").
coded(decision, code, params) if {
	decision.code == code
	decision.params == params
}
