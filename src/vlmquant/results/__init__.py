"""Every result a stage writes, typed, with its schema name and version (`core.typed`).

    eval.EvalResult            vlmquant.eval/1            eval --out X.json
    bench.BenchResult          vlmquant.bench/1           bench --out bench-*.json
    bench.ServeResult          vlmquant.serve-bench/1     bench --serve --out serve-*.json
    sensitivity.Sensitivity    vlmquant.sensitivity/1     sensitivity --out sens.json
    quantize.QuantizeRun       vlmquant.quantize-run/1    quantize: run.json in the export
    quantize.PrecisionMap      vlmquant.precision-map/1   quantize: precision_map.json
    quantize.BudgetChoice      vlmquant.kld-budget/1      quantize --kld-budget: kld_budget.json
    check.Verdict              vlmquant.check-vllm/1      check-vllm --json, check_vllm.json
    checkpoint.Inspect         vlmquant.inspect/1         inspect --json
    infer.InferRun             vlmquant.infer-run/1       infer: run.json
    infer.Compare              vlmquant.infer-compare/1   infer --compare: compare.json
    infer.Generation           vlmquant.generation/1      the engine worker's answer (GPU scripts)
    calib.Manifest             vlmquant.calib-manifest/1  calib: <set>.manifest.json
    recipes.Recipes            vlmquant.recipes/1         python -m vlmquant.eval.compare collect
    runs.ParityRun             vlmquant.parity-run/1      parity: parity.json
    runs.MakeTinyRun           vlmquant.make-tiny-run/1   make-tiny: run.json beside the weights

A renderer reads a result through its type's `read` (bad input, exit 2, for a file of another
kind, shape or version, naming the command that writes a good one: WRITER) and a stage writes
one through `dumps`. infer's samples.jsonl rows are `infer.SampleRow` (`core.typed.read_rows`).
This package imports only `vlmquant.core`.
"""
