"""Every result a stage writes, typed, with its schema name and version (`core.typed`).

    eval.EvalResult            vlmquant.eval/1          eval --out X.json
    bench.BenchResult          vlmquant.bench/1         bench --out bench-*.json
    bench.ServeResult          vlmquant.serve-bench/1   bench --serve --out serve-*.json
    sensitivity.Sensitivity    vlmquant.sensitivity/1   sensitivity --out sens.json
    recipes.Recipes            vlmquant.recipes/1       eval-compare's recipes-*.json
    check.Verdict              vlmquant.check-vllm/1    check-vllm --json, check_vllm.json
    runs.*Run                  vlmquant.<stage>-run/1   each stage's run.json

A renderer reads a result through its type's `read` (bad input, exit 2, for a file of another
shape or version) and a stage writes one through `build(...).to_json()`. This package imports
only `vlmquant.core`.
"""
