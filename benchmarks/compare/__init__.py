"""This SDK side by side with what users would use instead, in one run, on one emulator and workload.

Run ``python -m benchmarks.compare`` (``--quick`` for tiny sizes); see ``benchmarks/README.md``. This
package's ``__init__`` imports nothing: each contender runs in its own process, which must hold only its
own stack (the httpx baseline never imports the SDK or aiohttp).
"""
