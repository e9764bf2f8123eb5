#!/usr/bin/python3
"""Keeps the repository's documentation true. One ctest per part:

  links      every relative link in every .md file resolves to a file inside the repository
             (and a #fragment to a heading of the target .md)
  config     the configuration-key table of docs/operator-guide.md lists exactly the keys of
             schemas/config.schema.json, each with the schema's default
  man        every gantryctl subcommand (from `gantryctl --help` of the built binary, nested
             ones from `gantryctl <cmd> --help`) has its section in docs/man/gantryctl.1
  examples   every example message of docs/protocol.md (and the other docs) marked
             `<!-- schema: NAME -->` validates against schemas/NAME.schema.json; every schema
             is linked from docs/
  signing    the worked openssl example of docs/revision-format.md, run as written in a
             temporary directory (Ed25519, then ES256), makes envelopes the agent's own verifier
             accepts (--verdict: tests/unit/schemas' verdict tool, mode jws-verify)
  citations  no file under agent/ plugins/ tests/ schemas/ examples/ systemd/ cmake/ docs/
             cites a document outside the repository (the old design notes, ../shared)

Usage: check_docs.py PART --source DIR [--gantryctl PATH] [--verdict PATH]   (exit 1 naming every failure)
       check_docs.py fix-citations --source DIR   (rewrites old-style citations in place; see
                                                   CITATION_TARGETS, then review the diff)

The configuration-key table format (docs/operator-guide.md), between the two markers
`<!-- config-keys:begin -->` and `<!-- config-keys:end -->`:

  | key | default | meaning |
  |---|---|---|
  | `mqtt.uri` | required | ... |
  | `mqtt.root` | `"gantry"` | ... |

key: the dotted path of a leaf of config.schema.json; default: `required` for a required key,
otherwise the schema's default as compact JSON in backticks.
"""
import argparse
import base64
import glob
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Old-style citations: the words are split so that this file does not match itself.
OUTSIDE = re.compile(r"\b" + "DES" + r"IGN\b|\.\./" + "shared" + r"|/work/" + "shared")
SECTION = re.compile("\u00a7" + r"\d")
CITATION_DIRS = ["agent", "plugins", "tests", "schemas", "examples", "systemd", "cmake", "docs"]
CITATION_TOP = ["README.md", "CMakeLists.txt", "dev.sh"]
# What each old section is now documented in (fix-citations).
CITATION_TARGETS = {
    "1": "docs/architecture.md", "2": "docs/revision-format.md", "3": "docs/protocol.md",
    "4": "docs/architecture.md", "5": "docs/protocol.md", "6": "docs/architecture.md",
    "7": "docs/operator-guide.md", "8": "docs/operator-guide.md", "9": "README.md",
    "10": "docs/rollouts.md", "11": "docs/chunked-blocks.md", "12": "docs/dashboard.md",
}


def repo_files(source, exts=None):
    out = subprocess.run(["git", "-C", source, "ls-files", "-co", "--exclude-standard"],
                         capture_output=True, text=True)
    if out.returncode == 0:
        files = [f for f in out.stdout.splitlines() if os.path.isfile(os.path.join(source, f))]
    else:  # not a git checkout (a source tarball): walk it
        files = []
        for root, dirs, names in os.walk(source):
            dirs[:] = [d for d in dirs if d not in (".git", "build") and not d.startswith("build")]
            files += [os.path.relpath(os.path.join(root, n), source) for n in names]
    files = [f for f in files if not f.startswith(("build/", "build-", "demo-data/"))]
    if exts:
        files = [f for f in files if f.endswith(exts)]
    return sorted(files)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# --- links -----------------------------------------------------------------------------------

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)


def strip_code(text):
    text = FENCE.sub("", text)
    return INLINE_CODE.sub("", text)


def slug(heading):
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to dashes."""
    h = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h)
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(path):
    text = FENCE.sub("", read(path))
    seen, out = {}, set()
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    out |= set(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", text))
    return out


def part_links(args):
    source = os.path.realpath(args.source)
    failures, checked = [], 0
    for md in repo_files(args.source, (".md",)):
        text = strip_code(read(os.path.join(source, md)))
        targets = LINK.findall(text) + REF_DEF.findall(text)
        for target in targets:
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            checked += 1
            path, _, fragment = target.partition("#")
            if path.startswith("/"):
                failures.append(f"{md}: link {target}: absolute path (use a path relative to the file)")
                continue
            resolved = os.path.realpath(os.path.join(source, os.path.dirname(md), path)) if path \
                else os.path.join(source, md)
            rel = os.path.relpath(resolved, source)
            if rel == ".." or rel.startswith("../"):
                failures.append(f"{md}: link {target}: points outside the repository ({rel})")
                continue
            if not os.path.exists(resolved):
                failures.append(f"{md}: link {target}: {rel} does not exist")
                continue
            if fragment and resolved.endswith(".md") and fragment not in anchors(resolved):
                failures.append(f"{md}: link {target}: {rel} has no heading #{fragment}")
    print(f"links: {checked} relative links checked")
    return failures


# --- config ----------------------------------------------------------------------------------

def schema_leaves(schema, prefix="", required=()):
    """(dotted key, required, default or None) of every leaf of the config schema."""
    out = []
    for key, node in schema.get("properties", {}).items():
        path = prefix + key
        if node.get("type") == "object" and "properties" in node:
            out += schema_leaves(node, path + ".", node.get("required", []))
        else:
            out.append((path, key in required, node.get("default", None), "default" in node))
    return out


def config_table(guide_path):
    text = read(guide_path)
    m = re.search(r"<!-- config-keys:begin -->(.*?)<!-- config-keys:end -->", text, re.S)
    if not m:
        return None, ["docs/operator-guide.md: no <!-- config-keys:begin --> ... end --> table"]
    rows, failures = {}, []
    for line in m.group(1).splitlines():
        line = line.strip()
        if not line.startswith("|") or re.match(r"^\|[\s|:-]+\|$", line) or line.startswith("| key "):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        km = re.fullmatch(r"`([a-z_][a-z0-9_.]*)`", cells[0])
        if len(cells) < 3 or not km:
            failures.append(f"docs/operator-guide.md: config table row not `| \\`key\\` | default | meaning |`: {line}")
            continue
        if km.group(1) in rows:
            failures.append(f"docs/operator-guide.md: {km.group(1)} is listed twice")
        rows[km.group(1)] = cells[1]
    return rows, failures


def part_config(args):
    schema = json.loads(read(os.path.join(args.source, "schemas/config.schema.json")))
    rows, failures = config_table(os.path.join(args.source, "docs/operator-guide.md"))
    if rows is None:
        return failures
    leaves = {k: (req, default, has) for k, req, default, has in schema_leaves(schema, "", schema.get("required", []))}
    for key, (req, default, has) in leaves.items():
        if key not in rows:
            failures.append(f"config key {key} (schemas/config.schema.json) is missing from docs/operator-guide.md")
            continue
        want = "required" if req else (f"`{json.dumps(default, separators=(',', ':'))}`" if has else None)
        if want is not None and rows[key] != want:
            failures.append(f"docs/operator-guide.md: {key} default is {rows[key]}, the schema says {want}")
    for key in rows:
        if key not in leaves:
            failures.append(f"docs/operator-guide.md documents {key}, which schemas/config.schema.json does not know")
    print(f"config: {len(leaves)} schema keys, {len(rows)} documented keys")
    return failures


# --- man -------------------------------------------------------------------------------------

def subcommands(gantryctl, *path):
    out = subprocess.run([gantryctl, *path, "--help"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise SystemExit(f"FAIL: {gantryctl} {' '.join(path)} --help exited {out.returncode}: {out.stderr}")
    names, in_section = [], False
    for line in out.stdout.splitlines():
        if re.match(r"^\s*Subcommands:\s*$", line, re.I):
            in_section = True
            continue
        if in_section:
            m = re.match(r"^\s{2,}([a-z][a-z0-9-]*)\b", line)
            if m:
                names.append(m.group(1))
            elif line.strip() and not line.startswith(" "):
                in_section = False
    return names


def roff_text(text):
    text = re.sub(r"\\f[BIRP]|\\f\([A-Z]{2}|\\&|\\\(em|\\\(en", "", text)
    return text.replace("\\-", "-").replace('"', "")


def part_man(args):
    if not args.gantryctl or not os.access(args.gantryctl, os.X_OK):
        return [f"man: the built gantryctl is needed (--gantryctl), got {args.gantryctl!r}"]
    failures = []
    man = {}
    for page in ("gantryctl.1", "gantryd.8"):
        path = os.path.join(args.source, "docs/man", page)
        if not os.path.exists(path):
            failures.append(f"docs/man/{page} is missing")
            man[page] = ""
        else:
            man[page] = read(path)
    headings = [roff_text(m).strip() for m in re.findall(r"^\.SS\s+(.*)$", man["gantryctl.1"], re.M)]
    body = roff_text(man["gantryctl.1"])
    top = subcommands(args.gantryctl)
    if not top:
        failures.append(f"{args.gantryctl} --help lists no subcommands (did its format change?)")
    count = 0
    for name in top:
        count += 1
        if not any(h.split()[0] == name for h in headings if h):
            failures.append(f"gantryctl {name}: no '.SS {name} ...' section in docs/man/gantryctl.1")
        for sub in subcommands(args.gantryctl, name):
            count += 1
            if not re.search(rf"\b{re.escape(name)} {re.escape(sub)}\b", body):
                failures.append(f"gantryctl {name} {sub}: not described in docs/man/gantryctl.1")
    print(f"man: {count} gantryctl subcommands checked against docs/man/gantryctl.1")
    return failures


# --- examples --------------------------------------------------------------------------------

EXAMPLE = re.compile(r"<!--\s*schema:\s*([a-z0-9-]+)\s*-->[ \t]*\n[ \t]*```[a-z]*\n(.*?)\n[ \t]*```", re.S)


def part_examples(args):
    sys.path.insert(0, os.path.join(args.source, "tests/unit/schemas"))
    import check_schemas  # the repository's validator: patterns as ECMA-262, $refs resolved
    schemas = check_schemas.Schemas(args.source)
    failures, checked = [], 0
    docs = repo_files(args.source, (".md",))
    docs = [d for d in docs if d.startswith("docs/")]
    for doc in docs:
        text = read(os.path.join(args.source, doc))
        for m in EXAMPLE.finditer(text):
            name, body = m.group(1), m.group(2)
            line = text[:m.start()].count("\n") + 1
            if name not in schemas.raw:
                failures.append(f"{doc}:{line}: example names schema {name}, which schemas/ does not have")
                continue
            checked += 1
            try:
                msg = json.loads(body)
            except ValueError as e:
                failures.append(f"{doc}:{line}: example ({name}) is not JSON: {e}")
                continue
            for err in schemas.errors(name, msg):
                failures.append(f"{doc}:{line}: example fails {name}.schema.json: {err}")
            # An envelope (alone or in an update command) carries a revision document: the
            # decoded payload must be one too.
            envelope = msg.get("revision") if name == "command" and isinstance(msg, dict) else msg
            if name in ("jws", "command") and isinstance(envelope, dict) and "payload" in envelope:
                try:
                    payload = json.loads(base64.urlsafe_b64decode(envelope["payload"] + "=" * (-len(envelope["payload"]) % 4)))
                except ValueError as e:
                    failures.append(f"{doc}:{line}: example envelope's payload is not base64url JSON: {e}")
                    continue
                checked += 1
                for err in schemas.errors("revision", payload):
                    failures.append(f"{doc}:{line}: example envelope's payload fails revision.schema.json: {err}")
    if not any(EXAMPLE.search(read(os.path.join(args.source, d))) for d in docs if d == "docs/protocol.md"):
        failures.append("docs/protocol.md has no example marked <!-- schema: NAME -->")
    linked = "".join(read(os.path.join(args.source, d)) for d in docs)
    for name in sorted(schemas.raw):
        if f"schemas/{name}.schema.json" not in linked:
            failures.append(f"schemas/{name}.schema.json is linked from no document under docs/")
    print(f"examples: {checked} example messages validated")
    return failures


# --- signing -------------------------------------------------------------------------------

def part_signing(args):
    if not args.gantryctl or not args.verdict:
        return ["signing: the built gantryctl (--gantryctl) and verdict tool (--verdict) are needed"]
    import shutil
    import tempfile
    text = read(os.path.join(args.source, "docs/revision-format.md"))
    m = re.search(r"^### Worked example: signing with the openssl command line$(.*?)^## ", text, re.S | re.M)
    if not m:
        return ["docs/revision-format.md: no '### Worked example: signing with the openssl command line' section"]
    blocks = re.findall(r"^```sh\n(.*?)^```", m.group(1), re.S | re.M)
    revision = re.search(r"<!-- schema: revision -->\n```json\n(.*?)\n```", text, re.S)
    if len(blocks) < 2 or not revision:
        return ["docs/revision-format.md: the worked example needs its revision document and two sh blocks (EdDSA, ES256)"]
    missing = [t for t in ("openssl", "xxd", "awk") if not shutil.which(t)]
    if missing:
        return [f"signing: {', '.join(missing)} not installed (dev.sh PACKAGES)"]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "revision.json"), "w", encoding="utf-8") as f:
            f.write(revision.group(1) + "\n")
        script = ("set -euo pipefail\n" + blocks[0] + "\n" + blocks[1] + "\n" +
                  'printf \'{"payload":"%s","signatures":[{"protected":"%s","signature":"%s"}]}\\n\' '
                  '"$PAYLOAD" "$PROTECTED" "$SIGNATURE" > revision-ec.jws\n'
                  "mkdir trust && cp ops-2026.pem ops-ec.pem trust/\n")
        env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(args.gantryctl)) + ":" + os.environ["PATH"])
        run = subprocess.run(["bash", "-c", script], cwd=tmp, env=env, capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            return [f"docs/revision-format.md: the worked example fails (exit {run.returncode}): {run.stderr.strip()[-600:]}"]
        for envelope, kid in (("revision.jws", "ops-2026"), ("revision-ec.jws", "ops-ec")):
            v = subprocess.run([args.verdict, "jws-verify", os.path.join(tmp, "trust"), "1",
                                os.path.join(tmp, envelope)], capture_output=True, text=True, timeout=30)
            if v.returncode != 0 or v.stdout.split() != ["ok", kid]:
                failures.append(f"docs/revision-format.md: the worked example's {envelope} is refused by the agent's verifier: {v.stdout.strip()} {v.stderr.strip()}")
            else:
                print(f"signing: {envelope} (kid {kid}) verifies with the agent's own verifier")
    return failures


# --- citations -------------------------------------------------------------------------------

def citation_files(source):
    me = os.path.relpath(os.path.abspath(__file__), os.path.realpath(source))
    files = [f for f in repo_files(source)
             if f.split("/", 1)[0] in CITATION_DIRS or f in CITATION_TOP]
    return [f for f in files if f != me and f != "tests/docs/check_docs.py"]


def part_citations(args):
    failures, checked = [], 0
    for f in citation_files(args.source):
        try:
            text = read(os.path.join(args.source, f))
        except (UnicodeDecodeError, IsADirectoryError):
            continue  # binaries (images, firmware, corpora)
        checked += 1
        lines = text.splitlines()
        for n, line in enumerate(lines, 1):
            if OUTSIDE.search(line):
                failures.append(f"{f}:{n}: cites a document outside the repository: {line.strip()[:120]}")
            # A bare section number left over from the old notes ("§4"); an RFC's sections
            # ("RFC 7515 §7.2.1", possibly across a line break) are fine.
            elif SECTION.search(line) and "RFC" not in line and "RFC" not in (lines[n - 2] if n > 1 else ""):
                failures.append(f"{f}:{n}: cites a section of no document in the repository: {line.strip()[:120]}")
    print(f"citations: {checked} files checked")
    return failures


def fix_citations(args):
    """Mechanical first pass: "DESIGN §3" → "docs/protocol.md". Review the diff afterwards."""
    sec = re.compile(r"\bDES" + r"IGN(?:'s)? §(\d+)((?:,? (?:and )?§\d+)*)")
    changed = 0
    for f in citation_files(args.source):
        path = os.path.join(args.source, f)
        try:
            text = read(path)
        except (UnicodeDecodeError, IsADirectoryError):
            continue

        def repl(m):
            nums = [m.group(1)] + re.findall(r"§(\d+)", m.group(2))
            docs = []
            for n in nums:
                d = CITATION_TARGETS.get(n, "docs/")
                if d not in docs:
                    docs.append(d)
            return ", ".join(docs)
        new = sec.sub(repl, text)
        if new != text:
            with open(path, "w", encoding="utf-8") as out:
                out.write(new)
            changed += 1
            print(f"rewrote {f}")
    print(f"fix-citations: {changed} files rewritten; run the citations part for what is left")
    return []


PARTS = {"links": part_links, "config": part_config, "man": part_man,
         "examples": part_examples, "signing": part_signing, "citations": part_citations, "fix-citations": fix_citations}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=PARTS)
    ap.add_argument("--source", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--gantryctl")
    ap.add_argument("--verdict")
    args = ap.parse_args()
    failures = PARTS[args.part](args)
    for f in failures:
        print(f"FAIL: {f}")
    if failures:
        print(f"{args.part}: {len(failures)} failure(s)")
        return 1
    print(f"{args.part}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
