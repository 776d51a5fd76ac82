// isolab-bench: benchmarks that print figures; none passes or fails on time.
let what = CommandLine.arguments.dropFirst().first ?? "predict"
switch what {
case "predict":
    PredictBench.run()
default:
    print("usage: isolab-bench predict")
}
