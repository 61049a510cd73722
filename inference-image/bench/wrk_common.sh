# shellcheck shell=bash
# Shared by the wrk load scripts in this folder (source it after setting PY, MODEL_DIR and TMP).

# Writes $TMP/body-1.json and $TMP/body-64.json (held-out rows, the numbers exactly as the CSV spells
# them) and $TMP/post.lua, the wrk script that POSTs the file named by $BODY_FILE.
write_request_bodies() {
    "$PY" - "$MODEL_DIR" "$TMP" <<'PY'
import csv, json, sys
from pathlib import Path
model_dir, tmp = Path(sys.argv[1]), Path(sys.argv[2])
features = [f["name"] for f in json.loads((model_dir / "model_card.json").read_text())["features"]]
with open(model_dir / "holdout.csv", newline="") as f:
    rows = [[r[name] for name in features] for r in csv.DictReader(f)]
for n in (1, 64):
    body = '{"rows":[' + ",".join("[" + ",".join(r) + "]" for r in rows[:n]) + "]}"
    (tmp / f"body-{n}.json").write_text(body)
PY
    cat >"$TMP/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
