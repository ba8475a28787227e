#!/usr/bin/env bash
# Validates the Docker setup (compose.yaml + Dockerfile) without building or starting anything.
#
#   infra/compose-check.sh [COMPOSE_FILE [DOCKERFILE]]
#       defaults: <repo>/compose.yaml and <repo>/Dockerfile (also COMPOSE_CHECK_FILE,
#       COMPOSE_CHECK_DOCKERFILE). Relative paths inside the compose file are resolved
#       against the repository, as `docker compose --project-directory <repo>` does, and a
#       DOCKERFILE given here is read in place of <repo>/Dockerfile (which the services must
#       build from), so copies elsewhere are checked as if they were in place.
#
# 1. The first compose implementation that answers `version` validates the file:
#    `docker compose config -q`, `docker-compose config -q`, `podman compose config -q`.
#    None needs a running engine. If none is installed, that is said and step 2 alone runs.
# 2. Always: a structural check in Python 3 of the project's own rules, which `config -q`
#    does not know: every service exists and has a health check; the seven Rust services run
#    the one image built from the Dockerfile, each with its binary as command, its bind
#    address on 0.0.0.0 and published on 127.0.0.1, a /health/ready check on that port,
#    depends_on postgres (and kafka where it uses Kafka) with condition service_healthy,
#    only environment variables the code reads; the Postgres init script is the SQL of
#    infra/postgres.sh; the Kafka settings match the compose network; the binaries copied
#    by the Dockerfile are binaries of the workspace (`cargo metadata`, if cargo exists).
#    Uses PyYAML when importable, else a small built-in parser (block mappings, lists,
#    anchors and merge keys) that is enough for this file.
#
# Needs no network and runs in well under 10 s. Exit status: 0 ok, 1 problems found, 2 usage.
# Test hooks: COMPOSE_CHECK_NO_ENGINE=1 skips step 1, COMPOSE_CHECK_NO_YAML=1 forces the
# built-in parser.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="${1:-${COMPOSE_CHECK_FILE:-$REPO/compose.yaml}}"
DOCKERFILE="${2:-${COMPOSE_CHECK_DOCKERFILE:-$REPO/Dockerfile}}"
(($# <= 2)) || { echo "usage: $0 [COMPOSE_FILE [DOCKERFILE]]" >&2; exit 2; }
[[ -f "$FILE" ]] || { echo "compose-check: no such file: $FILE" >&2; exit 2; }
[[ -f "$DOCKERFILE" ]] || { echo "compose-check: no such file: $DOCKERFILE" >&2; exit 2; }
command -v python3 >/dev/null || { echo "compose-check: python3 is required" >&2; exit 2; }

# A compose run must never hang the check (e.g. a podman without a provider asking questions).
with_timeout() { if command -v timeout >/dev/null; then timeout 8 "$@"; else "$@"; fi; }

status=0
validator=""
if [[ "${COMPOSE_CHECK_NO_ENGINE:-}" != 1 ]]; then
    for impl in "docker compose" "docker-compose" "podman compose"; do
        read -r -a cmd <<<"$impl"
        command -v "${cmd[0]}" >/dev/null || continue
        with_timeout "${cmd[@]}" version </dev/null >/dev/null 2>&1 || continue
        validator="$impl"
        break
    done
fi
if [[ -n "$validator" ]]; then
    read -r -a cmd <<<"$validator"
    if out="$(with_timeout "${cmd[@]}" --project-directory "$REPO" -f "$FILE" config -q </dev/null 2>&1)"; then
        echo "compose: '$validator config -q' accepts ${FILE#"$REPO"/}"
    else
        echo "compose: '$validator config -q' rejects ${FILE#"$REPO"/}:"
        printf '%s\n' "$out" | sed 's/^/  /'
        status=1
    fi
else
    echo "compose: no compose implementation available; structural check only"
fi

cargo_json=""
cargo_note=""
if command -v cargo >/dev/null; then
    if ! cargo_json="$(with_timeout cargo metadata --no-deps --format-version 1 --offline \
            --manifest-path "$REPO/Cargo.toml" 2>/dev/null </dev/null)"; then
        cargo_json=""
        cargo_note="cargo metadata failed"
    fi
else
    cargo_note="cargo not found"
fi

# Python reads the program from fd 3, so `cargo metadata`'s JSON can come in on stdin.
python3 /dev/fd/3 "$REPO" "$FILE" "$DOCKERFILE" "$cargo_note" <<<"$cargo_json" 3<<'PY' || status=1
import base64, json, os, re, shlex, sys

repo, compose_path, dockerfile_path, cargo_note = sys.argv[1:5]
cargo_json = sys.stdin.read().strip()
problems, notes = [], []

def rel(path):
    return os.path.relpath(path, repo) if os.path.abspath(path).startswith(repo + os.sep) else path

def problem(msg):
    problems.append(msg)

# ---------------------------------------------------------------- what must be there
INFRA = ["postgres", "kafka"]
# service name = binary name; (bind variable, port) of the endpoint serving /health/ready
RUST = {
    "command-api":     ("COMMAND_API_BIND", 8080),
    "query-api":       ("QUERY_API_BIND", 8081),
    "payment-gateway": ("PAYMENT_GATEWAY_BIND", 8082),
    "outbox-relay":    ("ADMIN_BIND", 9101),
    "projector":       ("ADMIN_BIND", 9102),
    "saga-worker":     ("ADMIN_BIND", 9103),
    "console":         ("CONSOLE_BIND", 8083),
}
# one-shot services (a binary of the image that runs to completion): dependants wait
# for service_completed_successfully; no health check. name -> its database URL variable
ONE_SHOT = {"migrate": "OWNER_DATABASE_URL"}  # migrations, as the owner role orders_owner
USES_DB = {"command-api", "payment-gateway", "outbox-relay", "projector", "saga-worker", "console"}  # DATABASE_URL
USES_QUERY_DB = {"query-api"}                               # QUERY_DATABASE_URL (role orders_query)
USES_KAFKA = {"outbox-relay", "projector", "saga-worker"}   # KAFKA_BROKERS (platform::kafka::KafkaConfig)
USES_GATEWAY = {"saga-worker"}                              # PAYMENT_GATEWAY_URL
NOT_CLAP = {"RUST_LOG"}                                     # read by tracing's EnvFilter, not clap

# ---------------------------------------------------------------- YAML
def strip_comment(line):
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()

def scalar(text):
    text = text.strip()
    if text.startswith("[") or text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text

def mini_yaml(text):
    """Block mappings and lists, scalars, flow sequences of JSON strings, &anchors,
    *aliases and `<<:` merge keys. Enough for compose.yaml, not a YAML parser."""
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"line {n}: tab in indentation")
        line = strip_comment(raw)
        if line.strip() and line.strip() != "---":
            lines.append((n, len(line) - len(line.lstrip()), line.strip()))
    anchors = {}

    def value_of(text, n):
        if text.startswith("*"):
            name = text[1:].strip()
            if name not in anchors:
                raise ValueError(f"line {n}: unknown alias *{name}")
            return anchors[name]
        return scalar(text)

    def parse(i, indent):
        # a list or a mapping starting at lines[i], all of whose items are at `indent`
        if lines[i][2].startswith("- ") or lines[i][2] == "-":
            seq = []
            while i < len(lines) and lines[i][1] == indent and lines[i][2].startswith("-"):
                n, _, item = lines[i]
                seq.append(value_of(item[1:].strip(), n))
                i += 1
            return seq, i
        mapping, merges = {}, []
        while i < len(lines) and lines[i][1] == indent:
            n, _, item = lines[i]
            m = re.match(r'^("[^"]*"|\'[^\']*\'|[^:]+?)\s*:(?:\s+(.*))?$', item)
            if not m:
                raise ValueError(f"line {n}: expected 'key: value', got {item!r}")
            key, rest = scalar(m.group(1)), (m.group(2) or "").strip()
            anchor = None
            if rest.startswith("&"):
                anchor, _, rest = rest.partition(" ")
                anchor, rest = anchor[1:], rest.strip()
            i += 1
            if rest:
                value = value_of(rest, n)
            elif i < len(lines) and (lines[i][1] > indent or
                                     (lines[i][1] == indent and lines[i][2].startswith("- "))):
                value, i = parse(i, lines[i][1])
            else:
                value = None
            if anchor:
                anchors[anchor] = value
            if key == "<<":
                merges.extend(value if isinstance(value, list) else [value])
            elif key in mapping:
                raise ValueError(f"line {n}: duplicate key {key!r}")
            else:
                mapping[key] = value
        for merged in merges:
            if not isinstance(merged, dict):
                raise ValueError("merge key '<<' needs a mapping")
            for k, v in merged.items():
                mapping.setdefault(k, v)
        return mapping, i

    if not lines:
        raise ValueError("empty file")
    doc, i = parse(0, lines[0][1])
    if i != len(lines):
        n, _, item = lines[i]
        raise ValueError(f"line {n}: unexpected indentation at {item!r}")
    return doc

with open(compose_path, encoding="utf-8") as f:
    compose_text = f.read()
parser = "built-in parser (PyYAML not importable)"
try:
    if os.environ.get("COMPOSE_CHECK_NO_YAML") == "1":
        raise ImportError
    import yaml
    parser = f"PyYAML {yaml.__version__}"
    def load(text):
        return yaml.safe_load(text)
except ImportError:
    def load(text):
        return mini_yaml(text)
try:
    doc = load(compose_text)
except Exception as error:  # a YAML error of either parser
    print(f"structural: {rel(compose_path)} does not parse ({parser}): {error}")
    sys.exit(1)
if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
    print(f"structural: {rel(compose_path)} has no 'services' mapping ({parser})")
    sys.exit(1)
services = doc["services"]

# ---------------------------------------------------------------- helpers
def interpolate(value):
    # ${VAR:-default} / ${VAR-default} -> default, ${VAR} / $VAR -> "" (checks use the file's defaults)
    value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)
    return re.sub(r"\$[A-Za-z_][A-Za-z0-9_]*", "", value.replace("$$", "\0")).replace("\0", "$")

def environment(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in map(str, env))
    if not isinstance(env, dict):
        return {}
    return {str(k): interpolate("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in env.items()}

def as_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError:
            return value.split()
    return [str(v) for v in value]

def healthcheck_test(name, svc):
    hc = svc.get("healthcheck")
    if not isinstance(hc, dict):
        problem(f"{name}: no healthcheck")
        return ""
    if hc.get("disable") in (True, "true"):
        problem(f"{name}: healthcheck disabled")
        return ""
    test = as_list(hc.get("test"))
    if not test or test[0] == "NONE":
        problem(f"{name}: healthcheck has no test")
        return ""
    return " ".join(test)

def depends(name, svc):
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        problem(f"{name}: depends_on uses the short (list) form, which waits only for a start; "
                "use 'NAME: {condition: service_healthy}'")
        return {d: "service_started" for d in map(str, dep)}
    if not isinstance(dep, dict):
        problem(f"{name}: depends_on is not a mapping")
        return {}
    return {str(k): str((v or {}).get("condition", "service_started")) if isinstance(v, dict)
            else "service_started" for k, v in dep.items()}

def ports(svc):
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            out.append((str(p.get("host_ip", "")), str(p.get("published", "")), str(p.get("target", ""))))
        else:
            parts = str(p).split("/")[0].split(":")
            if len(parts) == 3:
                out.append(tuple(parts))
            elif len(parts) == 2:
                out.append(("", parts[0], parts[1]))
            else:
                out.append(("", "", parts[0]))
    return out

def url_parts(url):
    m = re.match(r"^(\w+)://(?:([^:@/]+)(?::([^@/]*))?@)?([^:/?]+)(?::(\d+))?(/[^?]*)?", url)
    return m.groups() if m else None

def project_path(path):
    return os.path.normpath(os.path.join(repo, path))

# ---------------------------------------------------------------- every service
tests = {}    # service -> its health check command, joined
deps_of = {}  # service -> {dependency: condition}
for name in INFRA + list(RUST):
    if name not in services:
        problem(f"service '{name}' is missing")
for name, svc in services.items():
    if not isinstance(svc, dict):
        problem(f"{name}: not a mapping")
        continue
    if name not in INFRA and name not in RUST and name not in ONE_SHOT:
        notes.append(f"extra service '{name}' (not checked beyond its health check)")
    if name not in ONE_SHOT:
        tests[name] = healthcheck_test(name, svc)
    elif str(svc.get("restart", "no")) != "no":
        problem(f"{name}: a one-shot service must not restart (restart: \"no\")")
    deps_of[name] = depends(name, svc)
    for dep, condition in deps_of[name].items():
        wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
        if dep not in services:
            problem(f"{name}: depends_on unknown service '{dep}'")
        elif condition != wanted:
            problem(f"{name}: depends_on {dep} with condition {condition}, not {wanted}")

# ---------------------------------------------------------------- postgres
pg = services.get("postgres")
if isinstance(pg, dict):
    if not str(pg.get("image", "")).startswith("postgres:15"):
        problem(f"postgres: image {pg.get('image')!r} is not postgres:15")
    if tests.get("postgres") and "pg_isready" not in tests["postgres"]:
        problem("postgres: healthcheck does not use pg_isready")
    init = [v for v in (str(v) for v in pg.get("volumes") or [])
            if ":/docker-entrypoint-initdb.d" in v]
    if not init:
        problem("postgres: no init script mounted into /docker-entrypoint-initdb.d")
    for volume in init:
        host = project_path(volume.split(":")[0])
        if not os.path.isfile(host):
            problem(f"postgres: init script {rel(host)} does not exist")
            continue
        if not host.endswith((".sql", ".sh")):
            problem(f"postgres: init script {rel(host)} is neither .sql nor .sh (the entrypoint would skip it)")
        def statements(text):
            return [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("--")]
        with open(host, encoding="utf-8") as f:
            init_sql = statements(f.read())
        with open(os.path.join(repo, "infra/postgres.sh"), encoding="utf-8") as f:
            m = re.search(r"super_psql <<'SQL'\n(.*?)\nSQL\n", f.read(), re.S)
        if m:
            if init_sql != statements(m.group(1)):
                problem(f"postgres: {rel(host)} differs from the role/database SQL of infra/postgres.sh (ensure_roles)")
        else:
            notes.append("infra/postgres.sh: ensure_roles SQL not found; init script checked by keywords only")
            text = "\n".join(init_sql)
            for needle in ("CREATE ROLE orders LOGIN", "CREATE ROLE orders_query LOGIN", "CREATE DATABASE orders"):
                if needle not in text:
                    problem(f"postgres: {rel(host)} lacks '{needle}'")

# ---------------------------------------------------------------- kafka
kafka = services.get("kafka")
kafka_bootstrap = None
if isinstance(kafka, dict):
    if not re.match(r"^apache/kafka:4\.1(\.|$)", str(kafka.get("image", ""))):
        problem(f"kafka: image {kafka.get('image')!r} is not apache/kafka:4.1.x")
    if tests.get("kafka") and "kafka-broker-api-versions" not in tests["kafka"]:
        problem("kafka: healthcheck does not query the broker API (kafka-broker-api-versions.sh)")
    kenv = environment(kafka)
    roles = set(kenv.get("KAFKA_PROCESS_ROLES", "").replace(" ", "").split(","))
    if roles != {"broker", "controller"}:
        problem(f"kafka: KAFKA_PROCESS_ROLES is {kenv.get('KAFKA_PROCESS_ROLES')!r}, not broker,controller (KRaft combined)")
    if not kenv.get("KAFKA_CONTROLLER_QUORUM_VOTERS") and not kenv.get("KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS"):
        problem("kafka: no KAFKA_CONTROLLER_QUORUM_VOTERS (the image formats storage for a static quorum)")
    advertised = {l.split("://", 1)[0]: l.split("://", 1)[1] for l in
                  kenv.get("KAFKA_ADVERTISED_LISTENERS", "").split(",") if "://" in l}
    kafka_bootstrap = advertised.get(kenv.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"))
    if kafka_bootstrap != "kafka:9092":
        problem(f"kafka: advertised listener is {kafka_bootstrap!r}, not kafka:9092 (the compose network name)")
    if kenv.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() != "true":
        problem("kafka: KAFKA_AUTO_CREATE_TOPICS_ENABLE is not true (infra/kafka/server.properties has it on)")
    for var in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        if kenv.get(var) != "1":
            problem(f"kafka: {var} must be 1 on a single broker")
    cid = kenv.get("CLUSTER_ID", "")
    try:
        ok = len(cid) == 22 and len(base64.urlsafe_b64decode(cid + "==")) == 16
    except ValueError:
        ok = False
    if not ok:
        problem(f"kafka: CLUSTER_ID {cid!r} is not a base64url UUID (22 characters)")

# ---------------------------------------------------------------- Dockerfile
with open(dockerfile_path, encoding="utf-8") as f:
    df_lines = []
    for line in f.read().replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            df_lines.append(line.strip())
stages = [i for i, l in enumerate(df_lines) if l.upper().startswith("FROM ")]
copied, bins_arg = [], None
final = df_lines[stages[-1]:] if stages else []
if len(stages) < 2:
    problem(f"{rel(dockerfile_path)}: not multi-stage ({len(stages)} FROM)")
for line in final:
    words = line.split()
    if words[0].upper() == "COPY" and any(w.startswith("--from=") for w in words):
        sources = [w for w in words[1:-1] if not w.startswith("--")]
        copied += [os.path.basename(s.rstrip("/")) for s in sources]
users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
if not users or users[-1].split(":")[0] in ("root", "0"):
    problem(f"{rel(dockerfile_path)}: the runtime stage does not switch to a non-root USER")
for line in df_lines:
    m = re.match(r'^ARG\s+BINS=(["\']?)(.*)\1$', line)
    if m:
        bins_arg = m.group(2).split()
if not any("cargo build" in l and "--release" in l for l in df_lines):
    problem(f"{rel(dockerfile_path)}: no 'cargo build --release'")
if set(copied) != set(RUST) | set(ONE_SHOT):
    problem(f"{rel(dockerfile_path)}: COPY --from copies {sorted(copied)}, "
            f"expected the binaries {sorted(set(RUST) | set(ONE_SHOT))}")
if bins_arg is not None and sorted(bins_arg) != sorted(copied):
    problem(f"{rel(dockerfile_path)}: ARG BINS {sorted(bins_arg)} differs from the COPY lines {sorted(copied)}")
final_text = "\n".join(final)

if cargo_json:
    meta = json.loads(cargo_json)
    workspace_bins = sorted({t["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]})
    for b in copied:
        if b not in workspace_bins:
            problem(f"{rel(dockerfile_path)}: copies '{b}', which is no binary of the workspace {workspace_bins}")
    bins_note = f"binaries checked against cargo metadata ({len(workspace_bins)} workspace binaries)"
else:
    bins_note = f"workspace binaries not checked ({cargo_note})"

# ---------------------------------------------------------------- variables the code reads
code_vars = set()
for top in sorted(os.listdir(repo)):
    src = os.path.join(repo, top, "src")
    if top.startswith(".") or top == "target" or not os.path.isdir(src):
        continue
    for root, _, files in os.walk(src):
        for fn in files:
            if fn.endswith(".rs"):
                with open(os.path.join(root, fn), encoding="utf-8", errors="replace") as f:
                    code_vars.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', f.read()))

# ---------------------------------------------------------------- Rust services
images, gateway_port = {}, RUST["payment-gateway"][1]
pgw = services.get("payment-gateway")
if isinstance(pgw, dict):
    bind = environment(pgw).get("PAYMENT_GATEWAY_BIND", "")
    if bind.rpartition(":")[2].isdigit():
        gateway_port = int(bind.rpartition(":")[2])
for name, (bind_var, port) in RUST.items():
    svc = services.get(name)
    if not isinstance(svc, dict):
        continue
    # the image: built from the checked Dockerfile, one tag for all of them
    build = svc.get("build")
    if build is None:
        problem(f"{name}: no 'build' (must use the image built from the repository's Dockerfile)")
    else:
        context = build if isinstance(build, str) else str((build or {}).get("context", "."))
        dockerfile = "Dockerfile" if isinstance(build, str) else str((build or {}).get("dockerfile", "Dockerfile"))
        built_from = os.path.normpath(os.path.join(project_path(context), dockerfile))
        if os.path.realpath(built_from) != os.path.realpath(os.path.join(repo, "Dockerfile")):
            problem(f"{name}: built from {rel(built_from)}, not the repository's Dockerfile")
    images[name] = str(svc.get("image", ""))
    # the binary
    cmd = as_list(svc.get("entrypoint")) or as_list(svc.get("command"))
    if not cmd or os.path.basename(cmd[0]) != name:
        problem(f"{name}: command/entrypoint {cmd!r} does not start the binary '{name}'")
    elif name not in copied:
        problem(f"{name}: the Dockerfile does not copy the binary '{name}'")
    # the environment
    env = environment(svc)
    for var in sorted(env):
        if code_vars and var not in code_vars and var not in NOT_CLAP:
            problem(f"{name}: sets {var}, which no crate reads (no env = \"{var}\" under */src)")
    bind = env.get(bind_var, "")
    if bind != f"0.0.0.0:{port}":
        problem(f"{name}: {bind_var} is {bind!r}, expected 0.0.0.0:{port} (the default binds 127.0.0.1 only)")
    if name in USES_DB:
        u = url_parts(env.get("DATABASE_URL", ""))
        if not u or u[1] != "orders" or u[3] != "postgres" or (u[4] or "5432") != "5432" or u[5] != "/orders":
            problem(f"{name}: DATABASE_URL {env.get('DATABASE_URL')!r} is not postgres://orders:…@postgres:5432/orders")
    if name in USES_QUERY_DB:
        u = url_parts(env.get("QUERY_DATABASE_URL", ""))
        if not u or u[1] != "orders_query" or u[3] != "postgres" or u[5] != "/orders":
            problem(f"{name}: QUERY_DATABASE_URL {env.get('QUERY_DATABASE_URL')!r} is not "
                    "postgres://orders_query:…@postgres:5432/orders")
    if name in USES_KAFKA:
        if env.get("KAFKA_BROKERS") != "kafka:9092" or (kafka_bootstrap and kafka_bootstrap != "kafka:9092"):
            problem(f"{name}: KAFKA_BROKERS is {env.get('KAFKA_BROKERS')!r}, not kafka:9092")
    if name in USES_GATEWAY:
        want = f"http://payment-gateway:{gateway_port}"
        if env.get("PAYMENT_GATEWAY_URL", "").rstrip("/") != want:
            problem(f"{name}: PAYMENT_GATEWAY_URL is {env.get('PAYMENT_GATEWAY_URL')!r}, not {want}")
    # published on loopback only
    if ("127.0.0.1", str(port), str(port)) not in ports(svc):
        problem(f"{name}: port {port} is not published as 127.0.0.1:{port}:{port}")
    for host_ip, published, target in ports(svc):
        if host_ip not in ("127.0.0.1", "::1", "[::1]"):
            problem(f"{name}: port {published or target} is published on all interfaces")
    # the health check
    test = tests.get(name, "")
    if test:
        if f":{port}/health/ready" not in test:
            problem(f"{name}: healthcheck {test!r} does not GET :{port}/health/ready")
        tool = next((t for t in ("curl", "wget") if re.search(rf"(^|[\s/]){t}\b", test)), None)
        if tool and not re.search(rf"apt-get install[^\n]*\b{tool}\b", final_text):
            problem(f"{name}: healthcheck uses {tool}, which the runtime stage of {rel(dockerfile_path)} does not install")
        if not tool and "/dev/tcp/" not in test:
            problem(f"{name}: healthcheck {test!r} uses neither curl/wget nor bash /dev/tcp")
    # start order
    deps = deps_of.get(name, {})
    needed = ["postgres"] + (["kafka"] if name in USES_KAFKA else [])
    for dep in needed:
        if deps.get(dep) != "service_healthy":
            problem(f"{name}: does not depend_on {dep} with condition service_healthy")
# the one-shot services: same image, their binary, the owner role's URL, first of all
for name, url_var in ONE_SHOT.items():
    svc = services.get(name)
    if not isinstance(svc, dict):
        problem(f"service '{name}' is missing")
        continue
    images[name] = str(svc.get("image", ""))
    cmd = as_list(svc.get("entrypoint")) or as_list(svc.get("command"))
    if not cmd or os.path.basename(cmd[0]) != name or name not in copied:
        problem(f"{name}: command {cmd!r} does not start the binary '{name}' copied by the Dockerfile")
    u = url_parts(environment(svc).get(url_var, ""))
    if not u or u[1] != "orders_owner" or u[3] != "postgres" or u[5] != "/orders":
        problem(f"{name}: {url_var} is not postgres://orders_owner:…@postgres:5432/orders")
    if deps_of.get(name, {}).get("postgres") != "service_healthy":
        problem(f"{name}: does not depend_on postgres with condition service_healthy")
for name in ("command-api", "payment-gateway"):  # they refuse to start on an unmigrated schema
    if isinstance(services.get(name), dict) and deps_of.get(name, {}).get("migrate") != "service_completed_successfully":
        problem(f"{name}: does not wait for migrate (condition service_completed_successfully)")
if len(set(images.values())) > 1 or "" in images.values():
    problem(f"the Rust services do not share one image tag: {images}")

# ---------------------------------------------------------------- report
print(f"structural: {rel(compose_path)} ({parser}): {len(services)} services, "
      f"Dockerfile copies {len(copied)} binaries; {bins_note}; "
      f"{len(code_vars)} environment variables known from the code")
for note in notes:
    print(f"  note: {note}")
if problems:
    for p in problems:
        print(f"  FAIL: {p}")
    print(f"structural: {len(problems)} problem(s)")
    sys.exit(1)
print("structural: ok (" + ", ".join(INFRA + list(ONE_SHOT) + list(RUST)) + ")")
PY

if ((status == 0)); then
    echo "compose-check: OK"
else
    echo "compose-check: FAILED"
fi
exit "$status"
