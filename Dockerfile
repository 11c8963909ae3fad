# syntax=docker/dockerfile:1
# Portcullis container image. Mirrors the README: the pinned OPA is installed with
# `go install`, the policies are compiled to a WebAssembly bundle, the TypeScript is built,
# and a slim non-root runtime serves with a mounted config file and an external PostgreSQL.

# --- 1. OPA toolchain and the policy bundle -------------------------------------------
FROM golang:1.26-bookworm AS policy
ENV CGO_ENABLED=0 GOBIN=/opt/opa/bin
RUN go install github.com/open-policy-agent/opa@v1.22.3
WORKDIR /src
COPY policies/ policies/
RUN /opt/opa/bin/opa test policies \
 && /opt/opa/bin/opa build -t wasm -e portcullis/decision --ignore '*_test.rego' -o /opt/opa/bundle.tar.gz policies

# --- 2. TypeScript build ----------------------------------------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts
COPY src/ src/
RUN npm run build && npm prune --omit=dev --ignore-scripts

# --- 3. Runtime -------------------------------------------------------------------------
FROM node:20-bookworm-slim AS runtime
# The config is mounted read-only; state (compiled policies, the decision spool) goes to a
# folder the non-root user owns (mount a volume there to keep the spool across containers).
ENV NODE_ENV=production \
    PORTCULLIS_CONFIG=/etc/portcullis/portcullis.yaml \
    PORTCULLIS_STATE_DIR=/var/lib/portcullis \
    OPA_BIN=/usr/local/bin/opa
WORKDIR /opt/portcullis
COPY --from=policy /opt/opa/bin/opa /usr/local/bin/opa
COPY --from=policy /opt/opa/bundle.tar.gz ./bundle/bundle.tar.gz
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Files the built code reads from the source tree at run time (tsc copies only .ts output).
COPY src/admin/console/static/ src/admin/console/static/
COPY package.json ./
COPY bin/ bin/
COPY migrations/ migrations/
COPY policies/ policies/
RUN useradd --system --uid 10001 --home-dir /opt/portcullis portcullis \
 && mkdir -p /var/lib/portcullis && chown portcullis /var/lib/portcullis && chmod 0700 /var/lib/portcullis
USER portcullis
# Gateway and admin ports (bind them to 0.0.0.0 in the mounted config).
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# One V8 helper thread instead of four: a gateway's heap is small, and four helpers contend with
# the event loop for the few cores a pod gets. Under load +5-8 % req/s and p99 -8-10 ms, alone the
# same (BENCHMARKS.md, ninth round); `npm run bench` runs every target with these flags.
ENTRYPOINT ["node", "--v8-pool-size=1", "bin/portcullis.js"]
CMD ["serve"]
