"""FHIR bulk exports (screener/reading/_bulk.py, screener/cli/_engines.py): NDJSON grouped by
patient.

Exports are made in tmp_path from the six Synthea bundles in tests/data/fhir, with each
patient's resources spread over several files per type and every reference form a server
writes; the group-by runs on a real DuckDB database.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("duckdb")

from screener.cli import app  # noqa: E402
from screener.cli._batch import screen_file  # noqa: E402
from screener.cli._engines import run_export  # noqa: E402
from screener.criteria import _catalog as catalog  # noqa: E402
from screener.reading import _bulk as bulk
from screener.reports._report import jsonl_line  # noqa: E402

DATA = Path(__file__).parent / "data" / "fhir"
BUNDLES = sorted(DATA.glob("*.json"))
AS_OF = dt.date(2026, 11, 20)
RULE_SETS = catalog.load_rule_sets()
runner = CliRunner()


def _reference(key: str, form: int) -> str:
    return [
        f"urn:uuid:{key}",
        f"Patient/{key}",
        f"https://ehr.example.org/fhir/Patient/{key}/_history/3",
    ][form % 3]


def make_export(
    folder: Path, bundles: list[Path] = BUNDLES, seed: int = 7, files_per_type: int = 2
) -> dict[str, Path]:
    """An export of the bundles' resources: each type in `files_per_type` files, patients'
    lines interleaved, references in the three forms; patient id -> its bundle.

    Each patient's resources of a type are cut in order across the files (the first ones in
    the first file, …), so reading them by file and line gives the bundle's order.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    streams: dict[str, list[list[list[str]]]] = {}  # type -> file -> patient -> lines
    owners: dict[str, Path] = {}
    for bundle in bundles:
        entries = json.loads(bundle.read_text(encoding="utf-8"))["entry"]
        mine: dict[str, list[str]] = {}
        for n, entry in enumerate(entries):
            resource = entry["resource"]
            if resource["resourceType"] == "Patient":
                owners[resource["id"]] = bundle
            for name in ("subject", "patient"):
                ref = resource.get(name)
                if isinstance(ref, dict) and ref.get("reference", "").startswith("urn:uuid:"):
                    ref["reference"] = _reference(ref["reference"][9:], n)
            mine.setdefault(resource["resourceType"], []).append(json.dumps(resource))
        for kind, lines in mine.items():
            cuts = sorted(rng.randint(0, len(lines)) for _ in range(files_per_type - 1))
            bounds = [0, *cuts, len(lines)]
            files = streams.setdefault(kind, [[] for _ in range(files_per_type)])
            for i in range(files_per_type):
                files[i].append(lines[bounds[i] : bounds[i + 1]])
    for kind, files in streams.items():
        for i, patients in enumerate(files):
            # patients' lines shuffled together, each patient's own order kept
            order = [p for p, lines in enumerate(patients) for _ in lines]
            rng.shuffle(order)
            queues = [iter(lines) for lines in patients]
            (folder / f"{kind}.{i:03d}.ndjson").write_text(
                "".join(next(queues[p]) + "\n" for p in order), encoding="utf-8"
            )
    return owners


def screened(folder: Path, **kwargs: Any) -> list[str]:
    kwargs.setdefault("as_of", AS_OF)
    return [d.text for d in run_export(str(folder), RULE_SETS, render=jsonl_line, **kwargs)]


def test_each_sample_bundle_screens_the_same_from_a_bulk_export(tmp_path):
    owners = make_export(tmp_path / "export")
    lines = screened(tmp_path / "export")
    assert len(lines) == len(BUNDLES) == 6
    seen = set()
    for line in lines:
        record = json.loads(line)
        shown = record["file"]
        assert shown.startswith(str(tmp_path / "export" / "Patient."))
        key = record.get("patient") or record["errors"][0]["message"].split()[1]
        bundle = owners[key]
        expected = jsonl_line(screen_file(str(bundle), RULE_SETS, AS_OF)).decode()
        # the same JSON, byte for byte, but for the file named in it
        assert line.replace(shown, "FILE") == expected.replace(str(bundle), "FILE")
        seen.add(key)
    assert seen == set(owners)
    # the two Synthea patients who died are refused, as from their bundles
    assert sum('"error"' in line for line in lines) == 2


def test_allergies_read_the_same_from_a_bulk_export(tmp_path):
    """AllergyIntolerance lines (their patient under `patient`) join the patient as in its
    bundle: NCT04546906's serious-allergy exclusion applies from either."""
    data = json.loads(BUNDLES[-1].read_text(encoding="utf-8"))  # Tom Goodwin, alive
    pid = next(
        e["resource"]["id"] for e in data["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    for n, (code, criticality) in enumerate([("70618", "high"), ("2670", "low")]):
        allergy = {
            "resourceType": "AllergyIntolerance",
            "id": f"alg-{n}",
            "patient": {"reference": f"urn:uuid:{pid}"},
            "code": {
                "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}]
            },
            "criticality": criticality,
            "recordedDate": "2019-03-15",
        }
        data["entry"].append({"fullUrl": f"urn:uuid:alg-{n}", "resource": allergy})
    bundle = tmp_path / "Tom_Goodwin.json"
    bundle.write_text(json.dumps(data), encoding="utf-8")
    make_export(tmp_path / "export", [bundle])
    assert sorted(p.name for p in (tmp_path / "export").glob("AllergyIntolerance.*")) == [
        "AllergyIntolerance.000.ndjson",
        "AllergyIntolerance.001.ndjson",
    ]
    (line,) = screened(tmp_path / "export")
    expected = jsonl_line(screen_file(str(bundle), RULE_SETS, AS_OF)).decode()
    shown = json.loads(line)["file"]
    assert line.replace(shown, "FILE") == expected.replace(str(bundle), "FILE")
    record = json.loads(line)
    assert set(record["sources"]) >= {"allergies[0]", "allergies[1]"}
    (trial,) = [t for t in record["trials"] if t["trial"] == "NCT04546906"]
    (e8,) = [c for c in trial["criteria"] if c["id"] == "E8"]
    assert e8["status"] == "fail"


@pytest.mark.slow
def test_output_is_the_same_bytes_with_worker_processes(tmp_path):
    make_export(tmp_path / "export")
    assert screened(tmp_path / "export", jobs=2) == screened(tmp_path / "export")


def test_resources_whose_patient_is_missing_are_counted_and_reported(tmp_path):
    folder = tmp_path / "export"
    make_export(folder, BUNDLES[:1])
    lost = [
        {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "subject": {"reference": "Patient/nobody"},
        }
        for i in range(3)
    ]
    lost.append({"resourceType": "Condition", "id": "c1"})  # names no patient at all
    (folder / "Observation.lost.ndjson").write_text(
        "".join(json.dumps(r) + "\n" for r in lost), encoding="utf-8"
    )
    records = [json.loads(line) for line in screened(folder)]
    errors = {r["error"]["message"]: r for r in records if "error" in r}
    assert len(records) == 3
    nobody = next(r for m, r in errors.items() if "Patient/nobody" in m)
    assert nobody["error"]["message"].startswith(
        "3 resource(s) refer to Patient/nobody, which is not in the export"
    )
    assert nobody["file"] == f"{folder}/Observation.lost.ndjson"
    assert nobody["error"]["line"] == 1
    none = next(r for m, r in errors.items() if "name no patient" in m)
    assert none["error"]["message"].startswith("1 resource(s) name no patient")
    assert none["error"]["line"] == 4


def test_a_malformed_line_is_an_error_naming_file_and_line_and_the_run_goes_on(tmp_path):
    folder = tmp_path / "export"
    make_export(folder)
    path = folder / "Observation.001.ndjson"
    path.write_bytes(
        b'{"resourceType": "Observation", "id": \n\n[1, 2]\n\xff\xfe\n'
        b'{"resourceType": "Observation", "value": NaN}\n'
    )
    records = [json.loads(line) for line in screened(folder)]
    bad = [r for r in records if r["file"] == str(path)]
    assert [(r["error"]["line"], r["error"]["message"].split(":")[1].strip()) for r in bad] == [
        (1, "not valid JSON"),
        (3, "not a FHIR resource (a JSON object with a resourceType)"),
        (4, "not UTF-8 text"),
        (5, "not valid JSON"),
    ]
    assert bad[0]["error"]["column"] == 39
    assert sum("patient" in r for r in records) == 4  # everyone else was screened


@pytest.mark.slow
def test_check_on_an_export_folder_exits_1_for_bad_lines_and_writes_every_patient(tmp_path):
    folder = tmp_path / "export"
    make_export(folder)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app,
        [
            "check",
            str(folder),
            "--as-of",
            "2026-11-20",
            "-f",
            "jsonl",
            "-o",
            str(out),
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 1, result.output  # the two deceased patients
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == screened(folder) or [line + "\n" for line in lines] == screened(folder)
    table = runner.invoke(app, ["check", str(folder), "--as-of", "2026-11-20"])
    assert "Cohort summary" in table.output and "Attrition" in table.output
    document = runner.invoke(app, ["check", str(folder), "--as-of", "2026-11-20", "-f", "json"])
    assert len(json.loads(document.output)) == 6  # an export is a batch: a JSON array


def test_a_manifest_names_the_types_and_unrelated_types_are_never_opened(tmp_path):
    folder = tmp_path / "export"
    make_export(folder, BUNDLES[:2])
    # a file of a type screening does not read is skipped without being read: its garbage
    # is never reported
    (folder / "Claim.000.ndjson").write_text("not json at all\n", encoding="utf-8")
    (folder / "part-7.ndjson").write_text("", encoding="utf-8")
    names = sorted(p.name for p in folder.glob("*.ndjson"))
    manifest = {
        "transactionTime": "2026-11-20T10:00:00Z",
        "request": "$export",
        "requiresAccessToken": True,
        "error": [],
        "output": [
            {"type": p.split(".")[0], "url": f"https://ehr.example/bulk/{p}"}
            for p in names
            if p != "part-7.ndjson"
        ]
        + [{"type": "Procedure", "url": "https://ehr.example/bulk/gone.ndjson"}],
    }
    manifest["output"].append({"type": "Encounter", "url": "https://x/part-7.ndjson"})
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    files, problems = bulk.export_files(folder, str(folder))
    assert {f.type for f in files if f.path.endswith("part-7.ndjson")} == {"Encounter"}
    assert [p.diagnostic.message for p in problems] == [
        "the manifest lists gone.ndjson (Procedure), which is not in the export folder"
    ]
    records = [json.loads(line) for line in screened(folder)]
    assert [r["file"] for r in records if "error" in r and r["file"].endswith("manifest.json")] == [
        f"{folder}/manifest.json"
    ]
    assert sum(Path(r["file"]).name.startswith("Patient.") for r in records) == 2
    assert not any("Claim" in r["file"] for r in records)


def test_resource_types_and_patient_references_are_read_from_names_and_references():
    assert bulk.type_from_name("Observation.000.ndjson") == "Observation"
    assert bulk.type_from_name("1.MedicationRequest.ndjson") == "MedicationRequest"
    assert bulk.type_from_name("Patient_2.ndjson") == "Patient"
    assert bulk.type_from_name("0001.ndjson") is None
    assert bulk.patient_key({"reference": "urn:uuid:abc"}) == "abc"
    assert bulk.patient_key({"reference": "Patient/abc"}) == "abc"
    assert bulk.patient_key({"reference": "https://h/fhir/Patient/abc/_history/2"}) == "abc"
    assert bulk.patient_key({"reference": "Group/abc"}) is None
    assert bulk.patient_key({"display": "Jane"}) is None


@pytest.mark.slow
def test_the_group_by_spills_to_disk_under_a_small_memory_limit(tmp_path):
    """DuckDB sorts the index past its memory limit by spilling; the groups stay whole."""
    folder = tmp_path / "export"
    folder.mkdir()
    rng = random.Random(3)
    lines = []
    for p in range(400):
        lines.append(("Patient", {"resourceType": "Patient", "id": f"p{p:04d}"}))
        lines += [
            (
                "Observation",
                {
                    "resourceType": "Observation",
                    "id": f"o{p}-{i}",
                    "subject": {"reference": f"Patient/p{p:04d}"},
                    "note": [{"text": "x" * 200}],
                },
            )
            for i in range(50)
        ]
    rng.shuffle(lines)
    for kind in ("Patient", "Observation"):
        (folder / f"{kind}.ndjson").write_text(
            "".join(json.dumps(r) + "\n" for k, r in lines if k == kind), encoding="utf-8"
        )
    with bulk.ExportIndex(folder, memory_limit="8MB", workdir=tmp_path) as index:
        groups = list(index.groups())
        assert index.resources == 400 * 51
    assert [g.key for g in groups] == [f"p{p:04d}" for p in range(400)]
    assert all(len(g.patients) == 1 and len(g.resources) == 50 for g in groups)
    assert not list(tmp_path.glob("screener-bulk-*"))  # the temporary folder is removed


def test_yaml_patients_screen_without_duckdb_and_an_export_says_what_to_install(tmp_path):
    make_export(tmp_path / "export", BUNDLES[:1])
    script = f"""
import sys
sys.modules["duckdb"] = None  # as if DuckDB were not installed
from typer.testing import CliRunner
from screener.cli import app
r = CliRunner().invoke(app, ["check", "examples/patients/complete-record-b-all.yaml",
                             "-f", "jsonl"])
assert r.exit_code == 0, r.output
r = CliRunner().invoke(app, ["check", {str(tmp_path / "export")!r}, "-f", "jsonl"])
assert r.exit_code == 1, r.output
print(r.output)
"""
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'screener[bulk]'" in done.stdout


def test_import_of_an_export_writes_each_patient_as_its_bundle_would_be_imported(tmp_path):
    from screener.screening._importer import bundle_to_yaml

    owners = make_export(tmp_path / "export")
    out = tmp_path / "patients"
    result = runner.invoke(
        app, ["import", str(tmp_path / "export"), "--output", str(out), "--as-of", "2026-11-20"]
    )
    assert result.exit_code == 1  # the two deceased patients are refused, as when screened
    written = sorted(out.glob("*.yaml"))
    assert len(written) == 4
    for path in written:
        bundle = owners[path.stem]
        expected = bundle_to_yaml(bundle, as_of=AS_OF)
        got = path.read_text(encoding="utf-8")
        # the same file but for its first line, which names where the patient came from
        assert got.split("\n", 1)[1] == expected.split("\n", 1)[1]
    usage = runner.invoke(app, ["import", str(tmp_path / "export")])
    assert usage.exit_code == 2 and "--output" in usage.output


def test_a_medication_reference_is_resolved_from_the_exports_medication_file(tmp_path):
    """A prescription naming Medication/ID reads the Medication as the bundle would."""
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05-17"}
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "3264",
                    "display": "dexamethasone",
                }
            ]
        },
    }
    prescriptions = [
        {
            "resourceType": "MedicationRequest",
            "id": f"rx{i}",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{who}"},
            "authoredOn": "2026-11-01",
            "medicationReference": {"reference": ref},
        }
        for i, (who, ref) in enumerate(
            [("p1", "Medication/m1"), ("p1", "Medication/m1"), ("p2", "Medication/gone")]
        )
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r}
            for r in [patient, *prescriptions[:2], medication]
        ],
    }
    (tmp_path / "bundle.json").write_text(json.dumps(bundle), encoding="utf-8")
    folder = tmp_path / "export"
    folder.mkdir()
    for name, resources in (
        ("Patient", [patient, {**patient, "id": "p2"}]),
        ("MedicationRequest", prescriptions),
        ("Medication", [{"resourceType": "Medication", "id": "other"}, medication]),
    ):
        (folder / f"{name}.ndjson").write_text(
            "".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8"
        )
    line, other = screened(folder)
    expected = jsonl_line(screen_file(str(tmp_path / "bundle.json"), RULE_SETS, AS_OF))
    shown = json.loads(line)["file"]
    assert line.replace(shown, "FILE") == expected.decode().replace(
        str(tmp_path / "bundle.json"), "FILE"
    )
    assert '"medications[0]":"MedicationRequest/rx0 (RxNorm 3264), 2026-11-01"' in line
    assert '"medications[1]"' in line and '"medications[2]"' not in line
    # a Medication the export lacks is a broken reference, as in a bundle
    assert "medicationReference 'Medication/gone' is not in the bundle" in other


def test_an_export_folder_that_cannot_be_read_is_an_error_record(tmp_path):
    (gone,) = [json.loads(line) for line in screened(tmp_path / "nowhere")]
    assert gone["file"] == str(tmp_path / "nowhere")
    assert gone["error"]["message"].startswith("cannot read the export folder")


def test_validate_reads_an_export_as_check_does_without_screening(tmp_path):
    # a manifest beside the NDJSON is the export's, not a bundle that fails to load
    folder = tmp_path / "export"
    make_export(folder)
    (folder / "manifest.json").write_text(
        '{"transactionTime": "2026-11-20T00:00:00Z", "request": "x", "output": []}',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["validate", str(folder)])
    assert "not a FHIR resource" not in result.stdout, result.stdout
    assert f"{folder}: a bulk export, 4 patients read" in result.stdout
    # a broken line is named by file and line, and the folder is then one with errors
    with (folder / "Observation.000.ndjson").open("a", encoding="utf-8") as out:
        out.write('{"resourceType": "Observation"\n')
    broken = CliRunner().invoke(app, ["validate", str(folder)])
    assert broken.exit_code == 1
    assert "Observation.000.ndjson:" in broken.stdout and "not valid JSON" in broken.stdout
    assert f"bad {folder}: a bulk export" in broken.stdout


def test_the_screening_log_digests_each_bulk_patients_own_lines(tmp_path):
    """A patient of a bulk export is no file of their own: the log records the digest of
    their NDJSON lines, which changes with their data and only theirs."""
    import sqlite3

    owners = make_export(tmp_path / "export")
    db = tmp_path / "screening.db"

    def digests() -> dict[str, str]:
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT patient, file_digest FROM screenings WHERE run_id = "
                "(SELECT MAX(id) FROM runs) AND patient IS NOT NULL"
            ).fetchall()
        return dict(rows)

    command = ["check", str(tmp_path / "export"), "--log", str(db), "--as-of", "2026-11-20"]
    runner.invoke(app, [*command, "-f", "jsonl"])
    first = digests()
    assert len(first) == 4 and all(d and d.startswith("sha256:") for d in first.values())
    assert len(set(first.values())) == 4  # each patient's own
    runner.invoke(app, [*command, "-f", "jsonl", "--jobs", "2"])  # the same from workers
    assert digests() == first
    # One of one patient's Observations is amended: only that patient's digest moves.
    patient = sorted(first)[0]
    assert patient in owners
    for path in sorted((tmp_path / "export").glob("Observation.*.ndjson")):
        lines = path.read_text("utf-8").splitlines(keepends=True)
        mine = [i for i, line in enumerate(lines) if patient in line]
        if mine:
            lines[mine[0]] = lines[mine[0]].replace('"final"', '"amended"', 1)
            path.write_text("".join(lines), "utf-8")
            break
    runner.invoke(app, command)  # a table this time: the records come back whole
    after = digests()
    assert {p for p in first if first[p] != after[p]} == {patient}
