// isolab-bench: benchmarks that print figures; they never pass or fail on time.
//   isolab-bench predict   model speed on generated fabrics (PredictBench.swift)
//   isolab-bench images    guest image build and boot figures (ImagesBench.swift)
//   isolab-bench boot [KERNEL…]   PVH vs bzImage boot per kernel, raw QEMU (BootPathBench.swift)
//   isolab-bench run [FABRIC [KERNEL [pvh|bzimage]]] [--rounds N]   isolab vs raw QEMU for one fabric: first record, whole run (RunBench.swift)
//   isolab-bench restore [KERNEL…] [--fabric NAME]… [--rounds N] [--kernel-arg WORD]… [--store S]… [--clock C] [--each]   restored scenarios' stages per kernel (RestoreBench.swift)
//   isolab-bench matrix [MATRIX_FILE] [--kernel K,…] [--jobs N] [--no-snapshot]   a whole matrix through the engine: wall, VMs, stages (MatrixBench.swift)
//   isolab-bench all   the faster-matrix figures in one run: the default matrix (ci/matrix.yaml), then predict
import Foundation

switch CommandLine.arguments.dropFirst().first {
case "predict":
    PredictBench.run()
case "images":
    ImagesBench.run()
case "boot":
    BootPathBench.run(Array(CommandLine.arguments.dropFirst(2)))
case "run":
    RunBench.run(Array(CommandLine.arguments.dropFirst(2)))
case "restore":
    RestoreBench.run(Array(CommandLine.arguments.dropFirst(2)))
case "matrix":
    MatrixBench.run(Array(CommandLine.arguments.dropFirst(2)))
case "all":
    MatrixBench.run(Array(CommandLine.arguments.dropFirst(2)))
    print("")
    PredictBench.run()
default:
    FileHandle.standardError.write(Data("usage: isolab-bench all | predict | images | boot [KERNEL…] | run [FABRIC [KERNEL [pvh|bzimage]]] [--rounds N] | restore [KERNEL…] [--fabric NAME]… [--rounds N] [--kernel-arg WORD]… [--store S]… [--clock C] [--each] | matrix [MATRIX_FILE] [--kernel K,…] [--jobs N] [--no-snapshot]\n".utf8))
    exit(2)
}
