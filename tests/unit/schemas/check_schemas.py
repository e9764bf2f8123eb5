#!/usr/bin/python3
"""Checks schemas/ with an independent validator (Debian's python3-jsonschema).

Parts (one ctest each):
  meta       every schemas/*.schema.json is a valid draft 2020-12 schema with its $id
  examples   every example that maps to a schema (examples.map beside this file) validates
  samples    tests/data/schemas/good/<name>/*.json validate against <name>.schema.json and
             tests/data/schemas/bad/<name>/*.json do not; every schema has both kinds
  config     the C++ config parser (--verdict binary) and config.schema.json give the same
             verdict on every config sample, every config example and ~1700 mutations of the
             full example; a bad sample's optional <name>.expect holds the start of the
             parser's message
  command    the same for the agent's command envelope parser and command.schema.json, on
             the command samples and their mutations; every reply the agent would send must
             match reply.schema.json
  manifest   the agent's revision and state parsers accept every good revision, state and run
             sample (a run.json wrapped into a state), and whatever they accept among all
             samples and ~6000 mutations is valid by revision/state/run.schema.json (the
             parsers also check what a schema cannot, e.g. that a container's group exists)
  jws        the agent's envelope decoder accepts every good and refuses every bad jws
             sample; whatever it accepts among their mutations is schema-valid (it also
             checks the protected header, which a schema cannot see); an envelope that the
             agent's own signer makes is schema-valid

Also a tool for other tests (exit 0 when every document is valid, 1 naming each error):
  check_schemas.py validate --schema progress [--lines] [FILE...]
validates each FILE (stdin when none) against schemas/<schema>.schema.json; with --lines
every non-empty line is one document (e.g. what mosquitto_sub printed).

Pattern semantics: draft 2020-12 patterns are ECMA-262, where "$" matches only at the end.
Python's re also matches "$" before a final newline, so patterns are rewritten ("$" → "\\Z")
before validating; check_schema always sees the files as they are.
"""
import argparse
import copy
import fnmatch
import glob
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile

try:
    import jsonschema
    from jsonschema import Draft202012Validator
except ImportError as e:
    print(f"FAIL: python3-jsonschema is not importable by {sys.executable} ({e}); "
          "install the Debian package: apt-get install python3-jsonschema", file=sys.stderr)
    sys.exit(1)
try:  # jsonschema >= 4.18 resolves $ref through referencing; RefResolver is deprecated there
    import referencing
    import referencing.jsonschema
except ImportError:
    referencing = None

ID_PREFIX = "https://gantry.dev/schemas/"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
HERE = os.path.dirname(os.path.abspath(__file__))


def ecma_pattern(p):
    """Rewrites unescaped "$" outside a character class to "\\Z"."""
    out, i, in_class = [], 0, False
    while i < len(p):
        c = p[i]
        if c == "\\":
            out.append(p[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        elif c == "$" and not in_class:
            c = "\\Z"
        out.append(c)
        i += 1
    return "".join(out)


def ecma_schema(node):
    if isinstance(node, dict):
        res = {}
        for k, v in node.items():
            if k == "pattern" and isinstance(v, str):
                res[k] = ecma_pattern(v)
            elif k == "patternProperties" and isinstance(v, dict):
                res[k] = {ecma_pattern(pk): ecma_schema(pv) for pk, pv in v.items()}
            elif k in ("const", "enum", "default", "examples"):
                res[k] = v
            else:
                res[k] = ecma_schema(v)
        return res
    if isinstance(node, list):
        return [ecma_schema(v) for v in node]
    return node


class Schemas:
    def __init__(self, source):
        self.dir = os.path.join(source, "schemas")
        self.raw = {}
        for path in sorted(glob.glob(os.path.join(self.dir, "*.schema.json"))):
            with open(path, encoding="utf-8") as f:
                self.raw[os.path.basename(path)[:-len(".schema.json")]] = json.load(f)
        if not self.raw:
            raise SystemExit(f"FAIL: no schemas in {self.dir}")
        self.store = {s["$id"]: ecma_schema(s) for s in self.raw.values() if "$id" in s}

    def validator(self, name):
        schema = self.store[ID_PREFIX + name + ".schema.json"]
        if referencing is None:  # Debian 12's jsonschema 4.10
            resolver = jsonschema.RefResolver(schema["$id"], schema, store=self.store)
            return Draft202012Validator(schema, resolver=resolver)
        registry = referencing.Registry().with_resources(
            (uri, referencing.Resource.from_contents(s, referencing.jsonschema.DRAFT202012))
            for uri, s in self.store.items())
        return Draft202012Validator(schema, registry=registry)

    def errors(self, name, doc):
        out = []
        for e in self.validator(name).iter_errors(doc):
            # For oneOf/anyOf, name the branch that came closest rather than "not valid under
            # any of the given schemas".
            while e.context:
                e = jsonschema.exceptions.best_match(e.context)
            out.append(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
        return out


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def part_meta(schemas, args):
    failures = []
    for name, s in schemas.raw.items():
        file = name + ".schema.json"
        if s.get("$schema") != DRAFT:
            failures.append(f"{file}: $schema must be {DRAFT}")
        if s.get("$id") != ID_PREFIX + file:
            failures.append(f"{file}: $id must be {ID_PREFIX + file}")
        try:
            Draft202012Validator.check_schema(s)
        except jsonschema.exceptions.SchemaError as e:
            failures.append(f"{file}: not a valid draft 2020-12 schema: {e.message}")
            continue
        # Resolves every $ref once: a dangling reference fails here, not in production.
        try:
            schemas.validator(name).is_valid({})
            for sample in glob.glob(os.path.join(args.source, "tests/data/schemas/*", name, "*.json")):
                schemas.validator(name).is_valid(load_json(sample))
        except Exception as e:  # RefResolutionError (4.10) or referencing's Unresolvable
            failures.append(f"{file}: cannot validate with it (unresolvable $ref?): {e}")
    print(f"meta: {len(schemas.raw)} schemas checked")
    return failures


def read_map():
    rules = []
    with open(os.path.join(HERE, "examples.map"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                fields = line.split()
                rules.append((fields[0], fields[1], "required" in fields[2:]))
    return rules


def part_examples(schemas, args):
    failures, checked = [], 0
    files = [os.path.relpath(p, args.source)
             for p in glob.glob(os.path.join(args.source, "examples/**/*.json"), recursive=True)]
    for pattern, schema, required in read_map():
        name = schema[:-len(".schema.json")]
        if name not in schemas.raw:
            failures.append(f"examples.map: {pattern} maps to missing schema {schema}")
            continue
        matched = sorted(f for f in files if fnmatch.fnmatch(f, pattern))
        if required and not matched:
            failures.append(f"examples.map: nothing matches {pattern}, which must exist")
        for f in matched:
            checked += 1
            try:
                doc = load_json(os.path.join(args.source, f))
            except ValueError as e:
                failures.append(f"{f}: not JSON: {e}")
                continue
            for err in schemas.errors(name, doc):
                failures.append(f"{f} (against {schema}): {err}")
    print(f"examples: {checked} example files validated")
    return failures


def part_samples(schemas, args):
    failures, checked = [], 0
    root = os.path.join(args.source, "tests/data/schemas")
    for kind in ("good", "bad"):
        for d in sorted(glob.glob(os.path.join(root, kind, "*"))):
            if os.path.basename(d) not in schemas.raw:
                failures.append(f"{os.path.relpath(d, args.source)}: no schema of that name")
    for name in schemas.raw:
        if name == "common":
            continue  # definitions only: nothing validates against it directly
        for kind in ("good", "bad"):
            samples = sorted(glob.glob(os.path.join(root, kind, name, "*.json")))
            if not samples:
                failures.append(f"{name}: no {kind} samples in tests/data/schemas/{kind}/{name}/")
            for path in samples:
                checked += 1
                rel = os.path.relpath(path, args.source)
                try:
                    doc = load_json(path)
                except ValueError as e:
                    failures.append(f"{rel}: samples must be JSON ({e})")
                    continue
                errs = schemas.errors(name, doc)
                if kind == "good" and errs:
                    failures.append(f"{rel}: good sample fails: {'; '.join(errs)}")
                if kind == "bad" and not errs:
                    failures.append(f"{rel}: bad sample passes")
    print(f"samples: {checked} samples validated")
    return failures


MUTATION_VALUES = [
    None, True, False, 0, 1, -1, 1.0, 1.5, 2, 3, 4, 5, 6, 32, 33, 300, 301, 1024, 1025, 3600,
    3601, 65535, 65536, 2**31 - 1, 2**31, 2**64 - 1, 2**64, "", "x", "gw-0001", "GW", "a..b",
    "gw\n", "/p\u0000q", "ignore", "reject", "mqtt", "coap", "tcp://h:1883", "ws://h/p q",
    "http://h", "fleet/eu", "a/+", "$SYS", "lxc.cap.keep", [], ["mqtt"], ["mqtt", "mqtt"],
    ["coap", "mqtt"], ["lab"], ["a/b"], ["lxc.hook.*"], [1], {}, {"x": 1},
]


def leaf_paths(doc, prefix=()):
    for k, v in doc.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from leaf_paths(v, prefix + (k,))


def mutations(base):
    yield "unmodified", base
    for path in leaf_paths(base):
        parent_path, key = path[:-1], path[-1]
        for i, value in enumerate(MUTATION_VALUES + ["<delete>"]):
            doc = copy.deepcopy(base)
            parent = doc
            for p in parent_path:
                parent = parent[p]
            if value == "<delete>":
                del parent[key]
            else:
                parent[key] = value
            yield f"{'.'.join(path)}={json.dumps(value)}", doc
    for prefix in [()] + [(k,) for k, v in base.items() if isinstance(v, dict)]:
        doc = copy.deepcopy(base)
        parent = doc
        for p in prefix:
            parent = parent[p]
        parent["bogus"] = 1
        yield f"{'.'.join(prefix + ('bogus',))}=1", doc


def cpp_verdicts(binary, kind, paths):
    out = subprocess.run([binary, kind] + paths, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"FAIL: {binary} exited {out.returncode}: {out.stderr}")
    lines = out.stdout.splitlines()
    if len(lines) != len(paths):
        raise SystemExit(f"FAIL: {binary} printed {len(lines)} lines for {len(paths)} files")
    return [(l.split("\t", 1) + [""])[:2] for l in lines]


def part_config(schemas, args):
    if not args.verdict or not os.access(args.verdict, os.X_OK):
        return [f"verdict binary {args.verdict!r} is not built"]
    failures = []
    root = os.path.join(args.source, "tests/data/schemas")
    cases = []  # (label, path, expected verdict or None, expected message prefix or None)
    for kind in ("good", "bad"):
        for path in sorted(glob.glob(os.path.join(root, kind, "config", "*.json"))):
            expect = None
            if os.path.exists(path[:-5] + ".expect"):
                with open(path[:-5] + ".expect", encoding="utf-8") as f:
                    expect = f.read().strip()
            cases.append((os.path.relpath(path, args.source), path, kind == "good", expect))
    for path in sorted(glob.glob(os.path.join(args.source, "examples/config/*.json"))):
        cases.append((os.path.relpath(path, args.source), path, True, None))
    full = os.path.join(args.source, "examples/config/gantryd.json")
    with tempfile.TemporaryDirectory() as tmp:
        if os.path.exists(full):
            for i, (label, doc) in enumerate(mutations(load_json(full))):
                path = os.path.join(tmp, f"m{i}.json")
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(doc, f)
                cases.append((f"mutation {label}", path, None, None))
        else:
            failures.append("examples/config/gantryd.json is missing: no mutations to compare")
        verdicts = cpp_verdicts(args.verdict, "config", [c[1] for c in cases])
        mutated_bad = 0
        for (label, path, expected, expect_msg), (cpp, msg) in zip(cases, verdicts):
            schema_ok = not schemas.errors("config", load_json(path))
            cpp_ok = cpp == "ok"
            if label.startswith("mutation") and not schema_ok:
                mutated_bad += 1
            if schema_ok != cpp_ok:
                failures.append(f"{label}: schema says {'valid' if schema_ok else 'invalid'}, "
                                f"C++ parser says {'valid' if cpp_ok else 'invalid: ' + msg}")
            if expected is not None and cpp_ok != expected:
                failures.append(f"{label}: expected {'valid' if expected else 'invalid'}")
            if expect_msg is not None and not msg.startswith(expect_msg):
                failures.append(f"{label}: C++ message {msg!r} does not start with {expect_msg!r}")
    print(f"config: {len(cases)} documents compared, {mutated_bad} mutations invalid")
    if mutated_bad < 100:
        failures.append(f"only {mutated_bad} mutations were invalid: the comparison proves little")
    return failures


COMMAND_VALUES = [
    None, True, 1, "", "c-2", "a" * 64, "a" * 65, "update", "rollback", "cancel", "gc",
    "get-state", "UPDATE", "reboot", "file:///media/usb/objects/", {}, {"payload": "e30"}, [],
]


def command_mutations(base):
    yield "unmodified", base
    for key in ["id", "op", "revision", "objects_base", "force"]:
        for value in COMMAND_VALUES + ["<delete>"]:
            doc = copy.deepcopy(base)
            if value == "<delete>":
                doc.pop(key, None)
            else:
                doc[key] = value
            yield f"{key}={json.dumps(value)}", doc


def part_command(schemas, args):
    if not args.verdict or not os.access(args.verdict, os.X_OK):
        return [f"verdict binary {args.verdict!r} is not built"]
    failures, cases = [], []
    root = os.path.join(args.source, "tests/data/schemas")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("good", "bad"):
            for path in sorted(glob.glob(os.path.join(root, kind, "command", "*.json"))):
                rel = os.path.relpath(path, args.source)
                cases.append((rel, path))
                if kind != "good":
                    continue
                for label, doc in command_mutations(load_json(path)):
                    mpath = os.path.join(tmp, f"m{len(cases)}.json")
                    with open(mpath, "w", encoding="utf-8") as f:
                        json.dump(doc, f)
                    cases.append((f"{rel} mutated {label}", mpath))
        for doc in ([], "gc", None, 1):
            mpath = os.path.join(tmp, f"m{len(cases)}.json")
            with open(mpath, "w", encoding="utf-8") as f:
                json.dump(doc, f)
            cases.append((f"document {json.dumps(doc)}", mpath))
        verdicts = cpp_verdicts(args.verdict, "command", [c[1] for c in cases])
        invalid = 0
        for (label, path), (cpp, reply_text) in zip(cases, verdicts):
            doc = load_json(path)
            schema_ok = not schemas.errors("command", doc)
            invalid += not schema_ok
            if schema_ok != (cpp == "ok"):
                failures.append(f"{label}: schema says {'valid' if schema_ok else 'invalid'}, "
                                f"C++ parser says {cpp}: {reply_text}")
            try:
                reply = json.loads(reply_text)
            except ValueError:
                failures.append(f"{label}: the reply is not JSON: {reply_text!r}")
                continue
            for err in schemas.errors("reply", reply):
                failures.append(f"{label}: reply {reply_text} breaks reply.schema.json: {err}")
            if reply.get("ok") != (cpp == "ok"):
                failures.append(f"{label}: reply ok={reply.get('ok')} for verdict {cpp}")
            if cpp == "ok" and reply.get("id") != doc.get("id"):
                failures.append(f"{label}: reply id {reply.get('id')!r} is not the command's")
    print(f"command: {len(cases)} documents compared, {invalid} invalid")
    if invalid < 50:
        failures.append(f"only {invalid} documents were invalid: the comparison proves little")
    return failures


JWS_VALUES = [None, 1, "", "e30", "e30=", "ab+/", "eyJhbGciOiJFZERTQSIsImtpZCI6ImsifQ", {}, [],
              {"alg": "none"}, {"kid": "k"}, {"note": 1}, "<delete>"]


def jws_mutations(base):
    yield "unmodified", base
    for key in ["payload", "signatures", "signature", "protected"]:
        for value in JWS_VALUES:
            doc = copy.deepcopy(base)
            target = doc if key in ("payload", "signatures") else doc["signatures"][0]
            if value == "<delete>":
                target.pop(key, None)
            else:
                target[key] = value
            yield f"{key}={json.dumps(value)}", doc
    for value in JWS_VALUES:
        doc = copy.deepcopy(base)
        if value == "<delete>":
            doc["signatures"][0].pop("header", None)
        else:
            doc["signatures"][0]["header"] = value
        yield f"header={json.dumps(value)}", doc


def part_jws(schemas, args):
    if not args.verdict or not os.access(args.verdict, os.X_OK):
        return [f"verdict binary {args.verdict!r} is not built"]
    failures, cases = [], []
    root = os.path.join(args.source, "tests/data/schemas")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("good", "bad"):
            for path in sorted(glob.glob(os.path.join(root, kind, "jws", "*.json"))):
                rel = os.path.relpath(path, args.source)
                cases.append((rel, path, kind == "good"))
                doc = load_json(path)
                if kind != "good" or not isinstance(doc.get("signatures"), list):
                    continue
                for label, mdoc in jws_mutations(doc):
                    mpath = os.path.join(tmp, f"m{len(cases)}.json")
                    with open(mpath, "w", encoding="utf-8") as f:
                        json.dump(mdoc, f)
                    cases.append((f"{rel} mutated {label}", mpath, None))
        verdicts = cpp_verdicts(args.verdict, "jws", [c[1] for c in cases])
        accepted = 0
        for (label, path, expected), (cpp, msg) in zip(cases, verdicts):
            schema_ok = not schemas.errors("jws", load_json(path))
            accepted += cpp == "ok"
            if expected is not None and (cpp == "ok") != expected:
                failures.append(f"{label}: the agent's decoder says {cpp} {msg}, expected "
                                f"{'ok' if expected else 'error'}")
            if cpp == "ok" and not schema_ok:
                failures.append(f"{label}: the agent accepts an envelope the schema refuses")
        signed = subprocess.run([args.verdict, "jws-sign", tmp], capture_output=True, text=True,
                                check=False)
        if signed.returncode != 0:
            failures.append(f"jws-sign exited {signed.returncode}: {signed.stderr}")
        else:
            env = json.loads(signed.stdout)
            for err in schemas.errors("jws", env):
                failures.append(f"an envelope from the agent's signer breaks jws.schema.json: {err}")
            if len(env.get("signatures", [])) != 2:
                failures.append(f"the signer made {len(env.get('signatures', []))} signatures, not 2")
    print(f"jws: {len(cases)} envelopes decoded, {accepted} accepted; 1 signed envelope validated")
    return failures


MANIFEST_VALUES = [
    None, True, 0, 1, -1, 1.5, 2**63, "", "x", "42", "../x", "GW", "a" * 64, "group:lab",
    "group:", "2027-01-31T00:00:00Z", "2027-01-31T00:00:00+02:00", "2027-01-31 00:00:00Z",
    "2027-01-31", "https://b/", "file:///m/", "ftp://x/", "a" * 64 + "A", "f" * 64, [], ["gw-1"],
    ["group:lab"], ["*"], {}, {"size": 1}, {"#spec": "pantavisor-service-system@1"},
    "lxc", "docker", "READY", "STARTED", "start-first", "blue", {"exec": ["/bin/true"]},
    {"exec": []}, {"persistence": "boot"}, "<delete>",
]


def set_path(doc, path, value):
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if value == "<delete>":
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value


def manifest_mutations(revision):
    yield "unmodified", revision
    state = revision.get("state", {})
    paths = [(k,) for k in ("rev", "seq", "targets", "expires", "objects_base", "objects",
                            "state", "extra")]
    paths += [("targets", 0), ("state", "extra/key")]
    paths += [("state", k) for k in state]
    for key, value in state.items():
        if key.endswith("/run.json") and isinstance(value, dict) and not key.startswith("bsp/"):
            paths += [("state", key, f) for f in list(value) + ["update_strategy", "health"]]
    for path in paths:
        for value in MANIFEST_VALUES:
            doc = copy.deepcopy(revision)
            try:
                set_path(doc, path, value)
            except (KeyError, IndexError, TypeError):
                continue
            yield f"{'.'.join(map(str, path))}={json.dumps(value)}", doc


def run_in_state(run):
    """A state holding one container defined by run (with the blocks it names)."""
    name = run.get("name") if isinstance(run.get("name"), str) and run.get("name") else "c"
    state = {"#spec": "pantavisor-service-system@1", f"{name}/run.json": run}
    for field in ("config", "root-volume"):
        if isinstance(run.get(field), str) and run[field]:
            state[f"{name}/{run[field].removeprefix('dm:')}"] = "e" * 64
    return state


def part_manifest(schemas, args):
    if not args.verdict or not os.access(args.verdict, os.X_OK):
        return [f"verdict binary {args.verdict!r} is not built"]
    failures = []
    root = os.path.join(args.source, "tests/data/schemas")
    with tempfile.TemporaryDirectory() as tmp:
        def add(cases, label, doc, schema):
            path = os.path.join(tmp, f"{schema}-{len(cases)}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(doc, f)
            cases.append((label, path, schema, doc))

        revisions, states = [], []
        for kind in ("good", "bad"):
            for path in sorted(glob.glob(os.path.join(root, kind, "revision", "*.json"))):
                rel = os.path.relpath(path, args.source)
                doc = load_json(path)
                add(revisions, rel, doc, "revision")
                if kind == "good":
                    for label, mdoc in manifest_mutations(doc):
                        add(revisions, f"{rel} mutated {label}", mdoc, "revision")
            for path in sorted(glob.glob(os.path.join(root, kind, "state", "*.json"))):
                add(states, os.path.relpath(path, args.source), load_json(path), "state")
            for path in sorted(glob.glob(os.path.join(root, kind, "run", "*.json"))):
                rel = os.path.relpath(path, args.source)
                add(states, f"{rel} in a state", run_in_state(load_json(path)), "run-in-state")
        accepted = total = 0
        for mode, cases in (("revision", revisions), ("state", states)):
            verdicts = cpp_verdicts(args.verdict, mode, [c[1] for c in cases])
            for (label, _, schema, doc), (cpp, msg) in zip(cases, verdicts):
                total += 1
                if label.startswith("tests/data/schemas/good/") and " mutated " not in label \
                        and cpp != "ok":
                    failures.append(f"{label}: a good sample, refused by the agent: {msg}")
                if cpp != "ok":
                    continue
                accepted += 1
                if schema == "run-in-state":
                    run = next(v for k, v in doc.items() if k.endswith("/run.json"))
                    errs = schemas.errors("state", doc) + schemas.errors("run", run)
                else:
                    errs = schemas.errors(schema, doc)
                if errs:
                    failures.append(f"{label}: the agent's {mode} parser accepts it, the schema "
                                    f"does not: {'; '.join(errs)}")
    print(f"manifest: {total} documents parsed, {accepted} accepted by the agent")
    if accepted < 50:
        failures.append(f"only {accepted} documents were accepted: the comparison proves little")
    return failures


PARTS = {"meta": part_meta, "examples": part_examples, "samples": part_samples,
         "config": part_config, "command": part_command, "jws": part_jws,
         "manifest": part_manifest}


def validate(schemas, args):
    if args.schema not in schemas.raw:
        return [f"no schema named {args.schema!r} (one of {', '.join(sorted(schemas.raw))})"]
    failures, count = [], 0
    for name in args.files or ["-"]:
        text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()
        docs = [l for l in text.splitlines() if l.strip()] if args.lines else [text]
        for i, doc_text in enumerate(docs):
            where = f"{name}:{i + 1}" if args.lines else name
            count += 1
            try:
                doc = json.loads(doc_text)
            except ValueError as e:
                failures.append(f"{where}: not JSON: {e}")
                continue
            failures += [f"{where}: {err}" for err in schemas.errors(args.schema, doc)]
    print(f"validate: {count} documents against {args.schema}.schema.json")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=sorted(PARTS) + ["validate"])
    ap.add_argument("files", nargs="*", help="validate: documents (default stdin)")
    ap.add_argument("--schema", help="validate: the schema's name, e.g. progress")
    ap.add_argument("--lines", action="store_true", help="validate: one document per line")
    ap.add_argument("--source", default=os.environ.get("GANTRY_SOURCE_DIR",
                                                       os.path.join(HERE, "../../..")))
    ap.add_argument("--verdict", help="the config_verdict binary (part config)")
    args = ap.parse_intermixed_args()
    schemas = Schemas(args.source)
    failures = validate(schemas, args) if args.part == "validate" else PARTS[args.part](schemas, args)
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    print(f"{args.part}: {'FAILED' if failures else 'ok'} "
          f"(jsonschema {importlib.metadata.version('jsonschema')} under {sys.executable})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
