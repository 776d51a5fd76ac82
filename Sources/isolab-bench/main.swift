// isolab-bench: benchmarks that print figures; they never pass or fail on time.
//   isolab-bench images    guest image build and boot figures (ImagesBench.swift)
import Foundation

switch CommandLine.arguments.dropFirst().first {
case "images":
    ImagesBench.run()
default:
    FileHandle.standardError.write(Data("usage: isolab-bench images\n".utf8))
    exit(2)
}
