"""The sample generator's former address, kept so that ``python -m polylog_console.core.sample``
(quoted in older notes and issues) still works; the generator lives in
:mod:`polylog_console.demo.sample`."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("polylog_console.demo.sample", run_name="__main__")
