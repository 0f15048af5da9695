"""Rule sets: read a trial's YAML, check every part of it, and compile it into nodes.

Everything that can be wrong with a rule set is found here, when it loads, with the rule
file, line and column: unknown keys and fields, operators that do not suit a field,
thresholds in units of the wrong kind, malformed trees, criterion ids out of order. A
rule set that loads can therefore be applied to any valid patient without a per-patient
surprise.

The compiler is split by concern into three layers, one class each: this module's compiles
the rule set's structure (trial, criteria, parts, their ids and order) on top of
criteria._compile_nodes (the node kinds that combine conditions or look into lists), which
stands on criteria._compile_fields (field conditions, operators, modifiers and their values;
the module docstring there says why the layers make one object). The model types, the
table of interned leaves and the public functions stay here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from dataclasses import field as _field
from functools import lru_cache
from pathlib import Path
from typing import Any

from screener.core import _reference as reference
from screener.core import _vocabulary as v
from screener.core._errors import RuleSetError
from screener.core._errors import describe_value as _q
from screener.core._model import Kind
from screener.criteria._compile_fields import BEFORE
from screener.criteria._compile_nodes import NodeCompiler
from screener.criteria._conditions import Count, Every, Exists, Leaf, Node, OneOf
from screener.criteria._language import Language
from screener.reading._document import Document, PathKey, parse, parse_with, read_text

_LEAVES: dict[Node, Node] = {}
# ASCII digits only, to the end of the text: Python's \d also matches Arabic-Indic and
# other digits (NCT٠٠٠…), and $ a final line break, which would make look-alike ids.
_CRITERION_ID = re.compile(r"^([IE])(\d+)\Z", re.ASCII)


@dataclass(frozen=True)
class Part:
    id: str
    label: str
    text: str
    check: Node


@dataclass(frozen=True)
class Criterion:
    id: str
    kind: Kind
    label: str
    text: str
    note: str
    check: Node | None  # None when the criterion is made of parts
    parts: tuple[Part, ...] = ()
    combine: str = "all"  # how parts make the whole: all or any
    judged: bool = False  # holds a review leaf, so an attestation can settle it
    # The item types its list conditions look for, by list ("conditions": gvhd, stroke, …),
    # so a worklist can say which conditions to ask about.
    asks: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class RuleSet:
    trial: str
    product: str
    title: str
    sources: tuple[str, ...]
    caveats: tuple[str, ...]
    criteria: tuple[Criterion, ...]
    file: str
    # The rule set's version: a digest of the rule file's text, so a report, a log or a
    # checklist says exactly which encoding of the criteria decided it.
    digest: str = ""
    # The vocabulary its fields were checked against when a rules directory extends the
    # built-in one (None: the built-in one): patients screened with it are read with it.
    vocabulary: v.Vocabulary | None = _field(default=None, compare=False, repr=False)

    def criterion(self, cid: str) -> Criterion | None:
        return next((c for c in self.criteria if c.id == cid), None)


class _Compiler(NodeCompiler):
    """The top layer: a rule set, its criteria and their parts, each compiled to a tree of
    nodes by the layers below (criteria._compile_nodes, criteria._compile_fields)."""

    def texts(self, value: Any, path: PathKey, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"{what} must be a list")
        return tuple(self.text(item, path + (i,), what) for i, item in enumerate(value))

    # ------------------------------------------------------------------------ rule set

    def rule_set(self) -> RuleSet:
        data = self.mapping(
            self.doc.data,
            (),
            {"trial", "product", "title", "sources", "caveats", "criteria"},
            {"trial", "product", "title", "sources", "criteria"},
            "a rule set",
        )
        trial = self.text(data["trial"], ("trial",), "trial")
        if reference.registry_of(trial) is None:
            raise self.fail(
                ("trial",),
                f"trial id {_q(trial)} is not a registry id",
                f"a trial is named by its registration number, such as "
                f"{reference.trial_id_examples()}",
            )
        stem = Path(self.doc.file).stem
        if stem != reference.trial_file_stem(trial) and not self.doc.file.startswith("<"):
            raise self.fail(
                ("trial",),
                f"rule file {Path(self.doc.file).name} holds trial {trial}",
                f"name the file {reference.trial_file_stem(trial)}.yaml",
            )
        raw = data["criteria"]
        if not isinstance(raw, list) or not raw:
            raise self.fail(("criteria",), "criteria must be a non-empty list")
        criteria = tuple(self.criterion(item, ("criteria", i)) for i, item in enumerate(raw))
        self.check_order(criteria)
        return RuleSet(
            trial=trial,
            product=self.text(data["product"], ("product",), "product"),
            title=self.text(data["title"], ("title",), "title"),
            sources=self.texts(data["sources"], ("sources",), "sources"),
            caveats=self.texts(data.get("caveats"), ("caveats",), "caveats"),
            criteria=criteria,
            file=self.doc.file,
            digest=text_digest(self.doc.text),
            vocabulary=None if self.vocabulary is v.BUILTIN else self.vocabulary,
        )

    def check_order(self, criteria: tuple[Criterion, ...]) -> None:
        """Ids run I1, I2, … then E1, E2, …: a gap would be a silently dropped criterion."""
        expected = {"I": 1, "E": 1}
        seen_exclusion = False
        for index, criterion in enumerate(criteria):
            letter, number = criterion.id[0], int(criterion.id[1:])
            path = ("criteria", index, "id")
            if letter == "I" and seen_exclusion:
                raise self.fail(
                    path,
                    f"inclusion {criterion.id} comes after the exclusions",
                    "list criteria in source order: I1, I2, …, then E1, E2, …",
                )
            seen_exclusion |= letter == "E"
            if number != expected[letter]:
                raise self.fail(
                    path,
                    f"criterion {criterion.id} is out of order: expected "
                    f"{letter}{expected[letter]}",
                    "every numbered item of the source appears, in source order",
                )
            expected[letter] += 1

    def criterion(self, data: Any, path: PathKey) -> Criterion:
        data = self.mapping(
            data,
            path,
            {"id", "kind", "label", "text", "note", "check", "parts", "combine"},
            {"id", "kind", "label", "text"},
            "a criterion",
        )
        cid = self.text(data["id"], path + ("id",), "id")
        match = _CRITERION_ID.match(cid)
        if not match:
            raise self.fail(path + ("id",), f"criterion id {_q(cid)} must look like I1 or E12")
        kind_text = data["kind"]
        if kind_text not in ("inclusion", "exclusion"):
            raise self.fail(path + ("kind",), "kind must be inclusion or exclusion")
        kind = self.kind = Kind(kind_text)
        if (kind is Kind.INCLUSION) != (match.group(1) == "I"):
            raise self.fail(path + ("kind",), f"{cid} is {kind_text}, but its id says otherwise")
        if ("check" in data) == ("parts" in data):
            raise self.fail(path, f"criterion {cid} needs either check or parts (not both)")
        parts: tuple[Part, ...] = ()
        self.reviews = 0
        if "parts" in data:
            raw = data["parts"]
            if not isinstance(raw, list) or not raw:
                raise self.fail(path + ("parts",), "parts must be a non-empty list")
            parts = tuple(self.part(item, path + ("parts", i), cid) for i, item in enumerate(raw))
            ids = [p.id for p in parts]
            if len(set(ids)) != len(ids):
                raise self.fail(path + ("parts",), f"duplicate part ids in {cid}")
            combine = data.get("combine", "all")
            if combine not in ("all", "any"):
                raise self.fail(path + ("combine",), "combine must be all or any")
            check: Node | None = None
        else:
            if "combine" in data:
                raise self.fail(path + ("combine",), "combine goes with parts")
            combine = "all"
            check = self.node(data["check"], path + ("check",), self.root, False)
        return Criterion(
            id=cid,
            kind=kind,
            label=self.text(data["label"], path + ("label",), "label"),
            text=self.text(data["text"], path + ("text",), "text"),
            note=self.text(data["note"], path + ("note",), "note") if "note" in data else "",
            check=check,
            parts=parts,
            combine=combine,
            judged=self.reviews > 0,
            asks=asked_types([check] if check is not None else [p.check for p in parts]),
        )

    def part(self, data: Any, path: PathKey, cid: str) -> Part:
        data = self.mapping(
            data, path, {"id", "label", "text", "check"}, {"id", "label", "check"}, "a part"
        )
        pid = self.text(data["id"], path + ("id",), "id")
        if not re.match(rf"^{re.escape(cid)}\.[a-z]$", pid):
            raise self.fail(path + ("id",), f"part id {_q(pid)} must be {cid}.a, {cid}.b, …")
        check = self.node(data["check"], path + ("check",), self.root, False)
        return Part(
            pid,
            self.text(data["label"], path + ("label",), "label"),
            self.text(data["text"], path + ("text",), "text") if "text" in data else "",
            check,
        )

    def interned(self, leaf: Leaf) -> Node:
        # Equal leaves of different criteria and trials become one object, so screening
        # a patient computes each once (conditions.Leaf memoises by identity).
        return _LEAVES.setdefault(leaf, leaf)


LANGUAGE = Language.of(_Compiler, BEFORE)


def asked_types(nodes: list[Node]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """For each list a tree looks into, the `type` values its conditions select items by."""
    found: dict[str, dict[str, None]] = {}

    def types(node: Node) -> list[str]:
        here = (
            [str(x) for x in node.values]
            if isinstance(node, OneOf) and node.field == "type"
            else []
        )
        return here + [t for child in node.children() for t in types(child)]

    def visit(node: Node) -> None:
        if isinstance(node, (Exists, Every, Count)) and node.where is not None:
            found.setdefault(node.list, {}).update(dict.fromkeys(types(node.where)))
        for child in node.children():
            visit(child)

    for node in nodes:
        visit(node)
    return tuple((name, tuple(values)) for name, values in found.items() if values)


def text_digest(text: str) -> str:
    """A short, stable digest of a text (the first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@lru_cache(maxsize=16)
def rules_digest(versions: tuple[tuple[str, str], ...]) -> str:
    """One digest for the rule sets a screening used, from their (trial, digest) pairs in
    order; a cohort screens every patient with the same ones, so it is worked out once."""
    return text_digest("\n".join(f"{trial} {digest}" for trial, digest in versions))


def from_document(doc: Document, vocabulary: v.Vocabulary | None = None) -> RuleSet:
    if doc.data is None:
        raise RuleSetError(doc.diagnostic("file is empty: a rule set is one YAML mapping", ()))
    if not isinstance(doc.data, dict):
        raise RuleSetError(doc.diagnostic("a rule set is one YAML mapping", ()))
    return _Compiler(doc, LANGUAGE, vocabulary).rule_set()


def load_rule_set(
    path: str | Path, display: str | None = None, vocabulary: v.Vocabulary | None = None
) -> RuleSet:
    """Load and check one rule file; raises RuleSetError with the rule file:line at fault.

    Through the YAML fast path (document.parse_with): every run loads every rule set, and
    positions are needed only to report a mistake, when the file is read again with them."""
    name = display if display is not None else str(path)
    text = read_text(Path(path), name, RuleSetError)
    return parse_with(text, name, lambda doc: from_document(doc, vocabulary), RuleSetError)


def parse_rule_set(
    text: str, file: str = "<rules>", vocabulary: v.Vocabulary | None = None
) -> RuleSet:
    return from_document(parse(text, file, RuleSetError), vocabulary)
