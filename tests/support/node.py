"""The page's merge scripts under Node (no browser): the same MERGE_ALL as in Chromium."""
import json
import shutil
import subprocess

from support.page import MERGE_ALL, WEB

NODE = shutil.which("node") or "/usr/bin/node"
SCRIPTS = ["unionfind.js", "merge.js"]  # the page's order


def merge_all_node(evidence: dict, settings: list) -> list[dict]:
    """The page's merge of each (tauS, tauT, root) setting, run by Node, as plain lists."""
    files = json.dumps([str(WEB / name) for name in SCRIPTS])
    script = (f"for (const f of {files}) require(f);\n"
              "const [raw, settings] = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
              f"process.stdout.write(({MERGE_ALL})([raw, settings]));")
    done = subprocess.run([NODE, "-e", script], input=json.dumps([evidence, settings]),
                          capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"node failed:\n{done.stderr}")
    return json.loads(done.stdout)
