import Foundation
import IsolabImages
import IsolabModel

/// Proves (or disproves) that KVM can run a guest here, within a deadline.
///
/// A paravirtual or broken /dev/kvm can hang a guest forever; the probe boots the smallest
/// fabric with domain type `kvm` and waits at most `deadline` seconds for the agent's first
/// record. The domain is destroyed either way.
public enum AccelProbe {
    public struct Result: Sendable {
        public var works: Bool
        /// Why not, when it does not.
        public var reason: String?
        public var seconds: Double
    }

    public static func probeKVM(runner: GuestRunner, image: GuestImage, kernelLabel: String, directory: String,
                                deadline: Double = 30) -> Result {
        let start = Date()
        guard FileManager.default.fileExists(atPath: "/dev/kvm") else {
            return Result(works: false, reason: "/dev/kvm does not exist", seconds: 0)
        }
        let topology = Topology(name: "kvm-probe", iommu: .none, fabric: [], file: "<kvm probe>")
        var req = RunRequest(topology: topology, fabric: Fabric(topology), scenario: nil, image: image,
                             kernelLabel: kernelLabel, directory: directory)
        req.accel = .kvm
        req.bootDeadline = deadline
        let obs = runner.run(req)
        let seconds = Date().timeIntervalSince(start)
        if obs.outcome == .completed { return Result(works: true, reason: nil, seconds: seconds) }
        return Result(works: false, reason: obs.problem ?? obs.outcome.rawValue, seconds: seconds)
    }
}
