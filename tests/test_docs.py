"""The README and docs/ link only to files in the repository (a clone has nothing beside it)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_links_stay_inside_the_repository(document):
    text = document.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+://|mailto:|#", t)]
    for target in local:
        path = (document.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{document.name} links outside the repository: {target}"
        assert path.exists(), f"{document.name} links to a missing file: {target}"
    assert "../shared" not in text and "DESIGN.md" not in text.replace("docs/design.md", "")


def test_every_family_has_a_page_with_its_models_counted():
    """docs/families/ is generated (tools/make_families.py): a new model or a changed count needs a new run."""
    import torch

    import vertebra
    from vertebra.analysis import count_params

    zoo = (ROOT / "docs" / "ZOO.md").read_text()
    families: dict[str, list[str]] = {}
    for name in vertebra.list_models():
        families.setdefault(vertebra.model_info(name).family, []).append(name)
    for family, names in families.items():
        page = ROOT / "docs" / "families" / f"{family}.md"
        assert f"(families/{family}.md)" in zoo, family
        text = page.read_text()
        for name in names:
            row = re.search(rf"^\| {name} \| \d+ \| ([\d,]+) \|", text, re.M)
            with torch.device("meta"):
                counted = count_params(vertebra.create_model(name))
            assert row and int(row.group(1).replace(",", "")) == counted, (family, name)
        assert "_blocks.svg)" in text and "_network.svg)" in text, family
