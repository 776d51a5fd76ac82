// isolab-bench: benchmarks that print figures; they never pass or fail on time.
//   isolab-bench predict   model speed on generated fabrics (PredictBench.swift)
//   isolab-bench images    guest image build and boot figures (ImagesBench.swift)
import Foundation

switch CommandLine.arguments.dropFirst().first {
case "predict":
    PredictBench.run()
case "images":
    ImagesBench.run()
default:
    FileHandle.standardError.write(Data("usage: isolab-bench predict|images\n".utf8))
    exit(2)
}
