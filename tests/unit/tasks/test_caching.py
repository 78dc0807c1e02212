import importlib.util
import sys
from pathlib import Path

from tasks.caching import STEP_CACHE, ResultModels, source_digest


def module_from(path: Path, text: str):
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def test_a_change_to_the_result_models_changes_the_steps_cache_key(tmp_path):
    """An upgrade that adds a field to a cached result must not load records pickled before it."""
    before = module_from(tmp_path / "fm_results_a.py", "class PushedImage:\n    tag = ''\n")
    after = module_from(
        tmp_path / "fm_results_b.py", "class PushedImage:\n    tag = ''\n    kept = False\n"
    )

    assert source_digest(before) != source_digest(after)
    assert ResultModels(digest=source_digest(before)).compute_key(None, {}, {}) != (
        ResultModels(digest=source_digest(after)).compute_key(None, {}, {})
    )


def test_the_steps_cache_includes_the_result_models():
    assert any(isinstance(policy, ResultModels) for policy in STEP_CACHE.policies)
