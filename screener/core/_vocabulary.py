"""The patient vocabulary: every field a patient file may hold, its kind and its label.

One catalog serves both sides: the patient loader reads and normalises values with it, and
the rule loader checks that a rule names a real field, compares it with a value of the
right kind and uses units of the right dimension. docs/patient-format.md describes the
same fields for people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cache

from screener.core import _reference as reference
from screener.core import _units as units
from screener.core._units import Analyte, Kind

_FOLD = re.compile(r"[\s_\-'.]+")


def fold(text: str) -> str:
    """Spelling-insensitive key: case, spaces, hyphens, underscores and dots ignored."""
    return _FOLD.sub("", text.lower())


@dataclass(frozen=True)
class Spec:
    """Base of all field kinds."""

    label: str


@dataclass(frozen=True)
class Text(Spec):
    pass


@dataclass(frozen=True)
class Date(Spec):
    pass


@dataclass(frozen=True)
class Bool(Spec):
    pass


@dataclass(frozen=True)
class Choice(Spec):
    """One of a fixed set of words; `synonyms` maps what a nurse might type to a value."""

    values: tuple[str, ...] = ()
    synonyms: tuple[tuple[str, str], ...] = ()

    def lookup(self) -> dict[str, str]:
        """Folded spelling -> value; built once per field, as every patient file asks."""
        return _choice_table(self.values, self.synonyms)


@cache
def _choice_table(values: tuple[str, ...], synonyms: tuple[tuple[str, str], ...]) -> dict[str, str]:
    table = {fold(v): v for v in values}
    table.update({fold(s): v for s, v in synonyms})
    return table


@dataclass(frozen=True)
class Integer(Spec):
    low: int = 0
    high: int = 10
    roman: bool = False  # NYHA classes are often written I-IV


@dataclass(frozen=True)
class Number(Spec):
    """A unitless number such as an INR."""

    low: float = 0.0
    high: float = 1e6


@dataclass(frozen=True)
class Quantity(Spec):
    kind: Kind = units.CONCENTRATION
    analyte: Analyte | None = None
    low: float | None = 0.0  # in `range_unit`; None = unbounded
    high: float | None = None
    range_unit: str = ""


Bounds = tuple[float | None, float | None]  # (low, high); None = no bound on that side


@dataclass(frozen=True)
class Lab(Spec):
    """A lab result: a bare quantity (or number), or {value, uln, date}.

    Plausibility, in `range_unit` ("" for a bare number such as the INR): a value or ULN
    outside `hard` cannot be a living patient's result, so it is an error (most often a unit
    slip, which the error names); a value outside `soft` is implausible, a warning that the
    result shows. A unit typo must not turn into a confident verdict.
    """

    value: Quantity | Number = field(default_factory=lambda: Number("value"))
    default_uln: str | None = None  # used only when the file gives none; said in the result
    uln_source: str | None = None
    hard: Bounds = (None, None)
    soft: Bounds = (None, None)
    range_unit: str = ""


@dataclass(frozen=True)
class Record(Spec):
    """A mapping with known keys."""

    fields: dict[str, Spec] = field(default_factory=dict)
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attestation(Record):
    """An investigator's decision on a judged criterion: `pass` or `fail`, or the same with
    who decided and when, `{result: pass, by: Dr A. Rivera, date: 2026-11-21}`."""


@dataclass(frozen=True)
class OpenMap(Spec):
    """A mapping whose keys are names (CD19, CD22) and values all of one kind."""

    value: Spec = field(default_factory=lambda: Text("value"))


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec = field(default_factory=lambda: Text("item"))


@dataclass(frozen=True)
class Mutations(Spec):
    """Protein changes such as T315I, also written p.T315I or p.Thr315Ile."""


POS_NEG = (
    ("positive", "negative"),
    (
        ("pos", "positive"),
        ("+", "positive"),
        ("detected", "positive"),
        ("reactive", "positive"),
        ("neg", "negative"),
        ("-", "negative"),
        ("not detected", "negative"),
        ("undetectable", "negative"),
        ("nonreactive", "negative"),
    ),
)


def result(label: str) -> Choice:
    return Choice(label, *POS_NEG)


def quantity(
    label: str,
    kind: Kind,
    analyte: Analyte | None = None,
    low: float | None = 0.0,
    high: float | None = None,
    range_unit: str = "",
) -> Quantity:
    return Quantity(label, kind, analyte, low, high, range_unit)


_DEFAULT_ULN = reference.values("default_uln")
DEFAULT_ULN_SOURCE = reference.source("default_uln")


def lab(
    key: str,
    label: str,
    value: Quantity | Number,
    hard: Bounds = (None, None),
    soft: Bounds = (None, None),
    unit: str = "",
) -> Lab:
    """A lab field, with its default ULN from the reference data when it has one, and its
    plausible ranges (`hard`, `soft`) in `unit`."""
    default = _DEFAULT_ULN.get(key)
    return Lab(
        label,
        value,
        None if default is None else str(default),
        DEFAULT_ULN_SOURCE if default is not None else None,
        hard,
        soft,
        unit,
    )


_DATE = Date("date")
_SEVERE = Bool("severe")
_ACTIVE = Bool("active")


THERAPY = Record(
    "therapy",
    {
        "type": Choice(
            "therapy type",
            (
                "chemotherapy",
                "tki",
                "car-t",
                "transplant",
                "immunotherapy",
                "radiotherapy",
                "other",
            ),
            (
                ("chemo", "chemotherapy"),
                ("tyrosine kinase inhibitor", "tki"),
                ("cart", "car-t"),
                ("car t", "car-t"),
                ("hsct", "transplant"),
                ("sct", "transplant"),
                ("bmt", "transplant"),
                ("stem cell transplant", "transplant"),
            ),
        ),
        "regimen": Text("regimen"),
        "cycles": Integer("cycles", 0, 100),
        "drug": Text("drug"),
        "generation": Integer("TKI generation", 1, 3),
        # Filled in from `drug` (a brand or code counts as its generic name), never written.
        "generic": Text("TKI generic name"),
        "outcome": Choice(
            "TKI outcome",
            ("failed", "intolerant", "responding", "ongoing"),
            (("failure", "failed"), ("resistant", "failed"), ("intolerance", "intolerant")),
        ),
        "target": Text("target"),
        "response": Choice(
            "CAR-T response",
            ("CR", "CRi", "NR", "relapse", "pending"),
            (
                ("complete remission", "CR"),
                ("no response", "NR"),
                ("relapsed", "relapse"),
                ("not evaluated", "pending"),
                ("not yet evaluated", "pending"),
            ),
        ),
        "kind": Choice(
            "transplant kind",
            ("allogeneic", "autologous"),
            (("allo", "allogeneic"), ("auto", "autologous")),
        ),
        "date": _DATE,
        "stop_date": Date("stop date"),
    },
    required=("type",),
)

CONDITION = Record(
    "condition",
    {
        "type": Choice(
            "condition type",
            (
                "gvhd",
                "autoimmune",
                "immunodeficiency",
                "genetic_syndrome",
                "gilbert_syndrome",
                "malignancy",
                "cns_disorder",
                "unstable_angina",
                "myocardial_infarction",
                "stroke",
                "arrhythmia",
                "thrombosis",
                "embolism",
                "heart_failure",
                "dic",
                "infection",
                "pulmonary_disease",
                "hypertension",
                "diabetes",
                "renal_insufficiency",
                "psychiatric",
                "substance_abuse",
                "other",
            ),
            (
                ("graft versus host disease", "gvhd"),
                ("gilbert", "gilbert_syndrome"),
                ("gilberts syndrome", "gilbert_syndrome"),
                ("cancer", "malignancy"),
                ("mi", "myocardial_infarction"),
                ("heart attack", "myocardial_infarction"),
                ("cerebrovascular accident", "stroke"),
                ("cva", "stroke"),
                ("disseminated intravascular coagulation", "dic"),
                ("autoimmune disease", "autoimmune"),
            ),
        ),
        "name": Text("name"),
        "date": _DATE,
        "active": _ACTIVE,
        "severe": _SEVERE,
        "controlled": Bool("controlled"),
        "persistent": Bool("persistent"),
        "kind": Choice("GVHD kind", ("acute", "chronic")),
        "grade": Choice("severity", ("mild", "moderate", "severe")),
        "systemic": Bool("systemic"),
        "systemic_therapy": Bool("on systemic therapy"),
        "status": Choice("malignancy status", ("active", "remission", "cured")),
        "category": Choice(
            "malignancy category",
            ("skin_bcc", "skin_scc", "cervical_cis", "prostate_localized", "breast_dcis", "other"),
            (
                ("basal cell carcinoma", "skin_bcc"),
                ("squamous cell carcinoma", "skin_scc"),
                ("cervical carcinoma in situ", "cervical_cis"),
                ("localized prostate cancer", "prostate_localized"),
                ("ductal carcinoma in situ", "breast_dcis"),
                ("dcis", "breast_dcis"),
            ),
        ),
        "invasive": Bool("invasive"),
    },
    required=("type",),
)

MEDICATION = Record(
    "medication",
    {
        "name": Text("name"),
        "class": Choice(
            "medication class",
            ("corticosteroid", "immunosuppressant", "other"),
            (
                ("steroid", "corticosteroid"),
                ("glucocorticoid", "corticosteroid"),
                ("immunosuppressive", "immunosuppressant"),
            ),
        ),
        "route": Choice(
            "route",
            ("systemic", "oral", "intravenous", "inhaled", "topical", "local"),
            (("iv", "intravenous"), ("po", "oral")),
        ),
        "start_date": Date("start date"),
        "stop_date": Date("stop date"),
        "ongoing": Bool("ongoing"),
        "long_term": Bool("to continue long-term after enrolment"),
    },
    required=("name",),
)

PROCEDURE = Record(
    "procedure",
    {
        "type": Choice(
            "procedure type",
            ("surgery", "cardiac_catheterization", "coronary_stent", "cabg", "biopsy", "other"),
            (
                ("operation", "surgery"),
                ("coronary artery bypass", "cabg"),
                ("stent", "coronary_stent"),
                ("catheterisation", "cardiac_catheterization"),
                ("cardiac catheterisation", "cardiac_catheterization"),
            ),
        ),
        "name": Text("name"),
        "date": _DATE,
    },
    required=("type",),
)

VACCINATION = Record(
    "vaccination",
    {
        "name": Text("name"),
        "date": _DATE,
        "live": Bool("live vaccine"),
    },
)

ALLERGY = Record(
    "allergy",
    {
        "substance": Text("substance"),
        "product_component": Bool("to a component of the cell product"),
        "biological": Bool("to a biological product (antibiotics included)"),
        "severe": _SEVERE,
    },
)

MARKER = Record(
    "marker",
    {
        "result": result("result"),
        "specimen": Choice(
            "specimen",
            ("bone marrow", "peripheral blood"),
            (
                ("bm", "bone marrow"),
                ("marrow", "bone marrow"),
                ("pb", "peripheral blood"),
                ("blood", "peripheral blood"),
            ),
        ),
        "date": _DATE,
    },
)

PATIENT = Record(
    "patient",
    {
        "id": Text("patient id"),
        "screening_date": Date("screening date"),
        "birth_date": Date("birth date"),
        "age": quantity("age", units.DURATION, high=130, range_unit="years"),
        "sex": Choice(
            "sex",
            ("female", "male"),
            (("f", "female"), ("woman", "female"), ("m", "male"), ("man", "male")),
        ),
        "weight": quantity("weight", units.MASS, high=500, range_unit="kg"),
        "informed_consent": Bool("informed consent"),
        "apheresis_date": Date("apheresis date"),
        "childbearing_potential": Bool("childbearing potential"),
        # A man's fertility is not "childbearing": one field says it for either sex, and for a
        # woman childbearing_potential says it too.
        "reproductive_potential": Bool("reproductive potential"),
        "pregnant": Bool("pregnant"),
        "lactating": Bool("lactating"),
        "pregnancy_test": Record(
            "pregnancy test",
            {"result": result("pregnancy test result"), "date": Date("pregnancy test date")},
        ),
        "pregnancy_planned": Bool("pregnancy planned within 12 months"),
        "contraception_agreed": Bool("agrees to contraception"),
        "diagnosis": Record(
            "diagnosis",
            {
                "disease": Choice(
                    "disease",
                    ("B-ALL", "T-ALL", "AML", "Burkitt", "MPAL", "other"),
                    (
                        ("B cell ALL", "B-ALL"),
                        ("B-cell acute lymphoblastic leukemia", "B-ALL"),
                        ("pre-B ALL", "B-ALL"),
                        ("B-precursor ALL", "B-ALL"),
                        ("T cell ALL", "T-ALL"),
                        ("acute myeloid leukemia", "AML"),
                        ("Burkitt leukemia", "Burkitt"),
                        ("Burkitt lymphoma", "Burkitt"),
                    ),
                ),
                "who_2022": Bool("diagnosed per WHO 2022"),
                "status": Choice(
                    "disease status",
                    ("relapsed", "refractory", "remission", "newly-diagnosed"),
                    (("relapse", "relapsed"), ("new", "newly-diagnosed"), ("CR", "remission")),
                ),
                "isolated_extramedullary": Bool("isolated extramedullary relapse"),
                "cns_involvement": Choice(
                    "CNS involvement",
                    ("none", "active", "history"),
                    (("no", "none"), ("cns1", "none")),
                ),
                "bone_marrow_blasts": quantity(
                    "bone marrow blasts", units.FRACTION, high=100, range_unit="%"
                ),
                "peripheral_blood_blasts": quantity(
                    "peripheral blood blasts", units.FRACTION, high=100, range_unit="%"
                ),
                # Leukemic lesions outside marrow and blood now (CNS, testis, skin, masses), with or
                # without marrow disease; isolated_extramedullary says whether the marrow is spared.
                "extramedullary_disease": Bool("extramedullary disease"),
                "liver_involvement": Bool("leukemic liver involvement"),
                "ph_positive": Bool("Philadelphia chromosome positive"),
                "abl1_mutations": Mutations("ABL1 mutations"),
                "markers": OpenMap("markers", MARKER),
            },
        ),
        "ecog": Integer("ECOG", 0, 4),
        "life_expectancy": quantity("life expectancy", units.DURATION),
        "lvef": quantity("LVEF", units.FRACTION, high=100, range_unit="%"),
        "nyha_class": Integer("NYHA class", 1, 4, roman=True),
        "dyspnea_grade": Integer("dyspnea grade", 0, 5),
        "spo2": quantity("SpO2", units.FRACTION, high=100, range_unit="%"),
        "supplemental_oxygen": Bool("on supplemental oxygen"),
        "immunotherapy_ae_grade": Integer("grade of adverse events of prior immunotherapy", 0, 5),
        "apheresis_access": Bool("vascular access adequate for apheresis"),
        "hsct_planned": Bool("intends to proceed to allogeneic HSCT"),
        # Whether abnormal organ function is attributed to the leukemia (liver or kidney
        # infiltration, say): some trials then leave enrolment to the investigator.
        "organ_dysfunction_disease_related": Bool("organ dysfunction attributed to the leukemia"),
        # Plausible ranges (hard: impossible beyond, an error; soft: implausible beyond, a
        # warning). Source: limits set for this screener from the input audit of 2026-12, not
        # a laboratory's reference range or a guideline. Soft: rarely seen in anyone well
        # enough to be screened (bilirubin above 30 mg/dL = 513 µmol/L or AST/ALT above
        # 5,000 U/L mean fulminant liver failure or shock liver; creatinine above 15 mg/dL =
        # 1,326 µmol/L untreated kidney failure; INR above 10 or APTT above 150 s an
        # anticoagulant overdose or a factor deficiency). Hard: beyond what any living patient
        # shows, so a typo or a unit slip (97 µmol/L creatinine written as 97 mg/dL).
        "labs": Record(
            "labs",
            {
                "total_bilirubin": lab(
                    "total_bilirubin",
                    "total bilirubin",
                    quantity("total bilirubin", units.CONCENTRATION, units.BILIRUBIN),
                    hard=(None, 100),
                    soft=(None, 30),
                    unit="mg/dL",
                ),
                "direct_bilirubin": lab(
                    "direct_bilirubin",
                    "direct bilirubin",
                    quantity("direct bilirubin", units.CONCENTRATION, units.BILIRUBIN),
                    hard=(None, 50),
                    soft=(None, 20),
                    unit="mg/dL",
                ),
                "ast": lab(
                    "ast",
                    "AST",
                    quantity("AST", units.ENZYME),
                    hard=(None, 50_000),
                    soft=(None, 5_000),
                    unit="U/L",
                ),
                "alt": lab(
                    "alt",
                    "ALT",
                    quantity("ALT", units.ENZYME),
                    hard=(None, 50_000),
                    soft=(None, 5_000),
                    unit="U/L",
                ),
                "creatinine": lab(
                    "creatinine",
                    "creatinine",
                    quantity("creatinine", units.CONCENTRATION, units.CREATININE),
                    hard=(None, 40),
                    soft=(0.1, 15),
                    unit="mg/dL",
                ),
                "creatinine_clearance": lab(
                    "creatinine_clearance",
                    "creatinine clearance",
                    quantity("creatinine clearance", units.FLOW),
                    hard=(None, 500),
                    soft=(None, 250),
                    unit="mL/min",
                ),
                "inr": lab("inr", "INR", Number("INR"), hard=(0.5, 20), soft=(0.8, 10)),
                # Blood counts. Transfused values count: the record need not say how a value was
                # reached (NCT07406178 I6 permits transfusion).
                "haemoglobin": lab(
                    "haemoglobin",
                    "haemoglobin",
                    quantity("haemoglobin", units.CONCENTRATION, units.HAEMOGLOBIN),
                    hard=(0.5, 30),
                    soft=(2, 25),
                    unit="g/dL",
                ),
                "platelets": lab(
                    "platelets",
                    "platelets",
                    quantity("platelets", units.COUNT),
                    hard=(None, 5_000),
                    soft=(None, 2_000),
                    unit="×10⁹/L",
                ),
                "aptt": lab(
                    "aptt",
                    "APTT",
                    quantity("APTT", units.SECONDS),
                    hard=(5, 300),
                    soft=(15, 150),
                    unit="s",
                ),
            },
        ),
        "serology": Record(
            "serology",
            {
                "hbsag": result("HBsAg"),
                "anti_hcv": result("anti-HCV"),
                "hbv_dna": result("HBV DNA"),
                "hcv_rna": result("HCV RNA"),
                "hiv": result("HIV"),
                "syphilis": result("syphilis"),
            },
        ),
        "therapies": ListOf("prior therapies", THERAPY),
        "conditions": ListOf("conditions", CONDITION),
        "medications": ListOf("medications", MEDICATION),
        "procedures": ListOf("procedures", PROCEDURE),
        "vaccinations": ListOf("vaccinations", VACCINATION),
        "allergies": ListOf("allergies", ALLERGY),
        "attestations": OpenMap(
            "attestations",
            Attestation(
                "attestation",
                {
                    "result": Choice("attestation", ("pass", "fail")),
                    "by": Text("attested by"),
                    "date": Date("attestation date"),
                },
                required=("result",),
            ),
        ),
    },
    required=("id",),
)

# Facts computed from others; a rule may name them like any field.
DERIVED: dict[str, Spec] = {
    "age": PATIENT.fields["age"],
    "labs.cockcroft_gault": replace(
        PATIENT.fields["labs"].fields["creatinine_clearance"],  # type: ignore[attr-defined]
        label="Cockcroft–Gault creatinine clearance",
    ),
}

# TKI generations, keyed by folded drug name (reference data, with its source).
TKI_GENERATIONS: dict[str, int] = {
    fold(drug): int(generation) for drug, generation in reference.values("tki_generations").items()
}


def resolve(path: str, root: Spec = PATIENT) -> Spec | None:
    """The spec of a dotted field path (`labs.creatinine`, `diagnosis.markers.CD19.result`)."""
    if root is PATIENT and path in DERIVED:
        return DERIVED[path]
    if root is PATIENT and path.endswith(".date") and isinstance(DERIVED.get(path[:-5]), Lab):
        return _DATE  # a derived lab is dated by its oldest input (reading._facts)
    spec: Spec = root
    for part in path.split("."):
        if isinstance(spec, Record):
            if part not in spec.fields:
                return None
            spec = spec.fields[part]
        elif isinstance(spec, OpenMap):
            spec = spec.value
        elif isinstance(spec, Lab) and part in ("value", "uln"):
            spec = spec.value
        elif isinstance(spec, Lab) and part == "date":
            spec = _DATE
        else:
            return None
    return spec


def field_names(spec: Spec) -> list[str]:
    """All dotted paths under a record, for did-you-mean hints on misspelt fields."""
    names: list[str] = []
    if isinstance(spec, Record):
        for key, sub in spec.fields.items():
            names.append(key)
            names.extend(f"{key}.{name}" for name in field_names(sub))
    return names
