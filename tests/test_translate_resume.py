"""A translation job stores each segment as it is translated: cancelled, then run again, it
translates only the missing segments and ends with the same result."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.documents import document_from_text
from engine.errors import Cancelled
from engine.options import LoadSettings
from engine.runtime.in_process import InProcessEngine
from engine.runtime.runtime import Runtime
from engine.store.jobs import JobStore
from engine.tasks.glossary import Glossary
from engine.tasks.jobs import TaskProgress
from engine.tasks.translate import TranslateSettings, Translation, translate

TEXT = """# Field Notes

We walked along the river.

- A compass

```
print("code is copied")
```

Rain arrived.
"""


@pytest.fixture(scope="module")
def client(smol_path: Path):
    rt = Runtime()
    for _ in rt.load(LoadSettings(path=str(smol_path), n_ctx=1024)):
        pass
    yield InProcessEngine(rt)
    rt.unload()


def test_a_cancelled_translation_resumes_where_it_stopped(client, tmp_path: Path):
    document = document_from_text(TEXT, name="notes.md", markdown=True)
    settings = TranslateSettings(target="French", n_parallel=1, max_ratio=1.0,
                                 glossary=Glossary.from_pairs([("river", "fleuve")]))
    with JobStore(tmp_path / "jobs.db") as store:
        seen: list[TaskProgress] = []
        with pytest.raises(Cancelled):
            for event in translate(client, document, settings, store=store,
                                   cancel=lambda: any(p.done >= 1 for p in seen)):
                seen.append(event)
        job = store.latest("translate")
        assert job is not None and job.status == "cancelled"
        stored = store.steps(job.id)
        assert 1 <= len(stored) < seen[-1].total

        events = list(translate(client, document, replace(settings, n_parallel=4),
                                store=store))
        resumed = events[-1]
        assert isinstance(resumed, Translation)
        assert resumed.segments_reused == len(stored)
        assert events[0] == TaskProgress("translate", len(stored), seen[-1].total)
        assert store.get(job.id).status == "done"
        for step, saved in stored.items():
            segment = resumed.segments[int(step.removeprefix("segment:"))]
            assert segment.text == saved["text"] and segment.required == tuple(saved["required"])
        assert all(s.text or s.needs_review for s in resumed.segments)
        river = next(s for s in resumed.segments if "river" in s.source)
        assert ("fleuve" in river.text) != any("“fleuve”" in f.message for f in river.flags)
        assert next(s for s in resumed.segments if not s.translated).text == \
            'print("code is copied")'
