"""The page's modules under Node (no browser): the same MERGE_ALL as in Chromium."""
import json
import shutil
import subprocess

from support.page import MERGE_ALL, WEB

NODE = shutil.which("node") or "/usr/bin/node"


def run_node(modules: list[str], body: str, stdin: str = "", timeout: float = 120):
    """`body` under Node with the named modules of sttm_viz/web imported, their exports
    gathered in `STTM` (sttm_viz/web/package.json makes Node read them as ES modules)."""
    imports = "".join(f"Object.assign(STTM, await import({json.dumps((WEB / m).as_uri())}));"
                      for m in modules)
    script = f"const STTM = {{}}; {imports}\n{body}"
    return subprocess.run([NODE, "--input-type=module", "-e", script], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def merge_all_node(evidence: dict, settings: list) -> list[dict]:
    """The page's merge of each (tauS, tauT, root) setting, run by Node, as plain lists."""
    body = ("const [raw, settings] = JSON.parse((await import('node:fs')).readFileSync(0, 'utf8'));\n"
            f"process.stdout.write(({MERGE_ALL})([raw, settings]));")
    done = run_node(["merge.js"], body, json.dumps([evidence, settings]))
    if done.returncode:
        raise RuntimeError(f"node failed:\n{done.stderr}")
    return json.loads(done.stdout)
