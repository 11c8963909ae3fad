package portcullis
decision := {"allow": true, "status": 200, "reasons": []}
