"""ActionLoop launcher for OpenWhisk's docker skeleton protocol: the action is an executable (`exec`) run once per
activation with the parameters as JSON in argv[1]; the last line of its stdout is the result, the lines before it
are logs (as OpenWhisk's dockerskeleton actionproxy.py runs it)."""

import json
import os
import subprocess
import sys

NOT_A_DICT = "The action did not return a dictionary."


def main() -> None:
    exe = sys.argv[1]
    reply = os.fdopen(3, "w")
    for line in sys.stdin:
        msg = json.loads(line)
        env = {**os.environ, **{f"__OW_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
                                for k, v in msg.items() if k != "value"}}
        try:
            out = subprocess.run([exe, json.dumps(msg.get("value") or {})], stdout=subprocess.PIPE, env=env,
                                 cwd=os.path.dirname(exe), check=False).stdout.decode(errors="replace")
        except OSError as e:
            out = str(e)
        lines = out.rstrip("\n").split("\n")
        for log in lines[:-1]:
            print(log)
        sys.stdout.flush()
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = None
        if not isinstance(result, dict):
            print(lines[-1])  # as OpenWhisk: what was not a result is a log line
            sys.stdout.flush()
            result = {"error": NOT_A_DICT, "__ow_status": 502}  # the proxy answers 502 (runtimes/actionloop)
        reply.write(json.dumps(result) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
