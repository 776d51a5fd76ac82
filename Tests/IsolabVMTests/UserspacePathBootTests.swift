import Foundation
import IsolabModel
import IsolabProtocol
import IsolabVM
import XCTest

/// The iommufd / VFIO cdev path and VFIO's no-IOMMU mode in real guests: the source-built
/// `7.3-iommufd` kernel offers both; the Debian 6.12 does not and reports them unsupported.
final class UserspacePathBootTests: XCTestCase {
    func testCdevAndNoIOMMUPathsWithTheirEvidence() throws {
        let p2p = try BootSupport.topology("switch-no-acs")
        let mf = try BootSupport.topology("multifunction-e1000e-edu")
        let none = try BootSupport.topology("iommu-none")
        func scenario(_ t: Topology, _ name: String) -> Scenario { t.scenarios.first { $0.name == name }! }
        var requests: [RunRequest] = []
        for k in ["7.3-iommufd", "6.12"] {
            requests.append(try BootSupport.request(p2p, kernel: k, scenario: scenario(p2p, "p2p-through-iommufd")))
            requests.append(try BootSupport.request(mf, kernel: k, scenario: scenario(mf, "kernel-driver-blocks-iommufd-claim")))
            requests.append(try BootSupport.request(none, kernel: k, scenario: scenario(none, "unprotected-dma-through-noiommu-vfio")))
        }
        let obs = try BootSupport.run(requests)
        let aPath = Fabric(p2p).function(of: "A")!.path
        for (req, o) in zip(requests, obs) {
            let label = "\(req.kernelLabel) \(req.topology.name)/\(req.scenario!.name)"
            XCTAssertEqual(o.outcome, .completed, "\(label): \(o.problem ?? "")\n\(o.consoleTail.suffix(20).joined(separator: "\n"))")
            let built = req.kernelLabel == "7.3-iommufd"
            XCTAssertEqual(o.inventory?.iommufd, built, label)
            XCTAssertEqual(o.inventory?.vfioCdev, built, label)
            func step(_ i: Int) -> StepRecord? { o.steps.first { $0.index == i } }
            switch (req.topology.name, built) {
            case ("switch-no-acs", true):
                let open = try XCTUnwrap(step(2), label)
                XCTAssertEqual(open.result, "ok", "\(label): \(open.detail ?? "")")
                XCTAssertEqual(open.substeps.map(\.name.rawValue), ["open-iommufd", "alloc-ioas", "open-device", "bind-iommufd", "attach-ioas"], label)
                XCTAssertTrue(open.substeps[2].detail?.hasPrefix("/dev/vfio/devices/vfio") == true, "\(label): \(open.substeps)")
                // Through the IOAS: A -> B unmapped faults as A, memory delivered, unmapped faults.
                XCTAssertEqual(step(4)?.result, "faulted", label)
                XCTAssertEqual(step(4)?.dma?.faultRequester, aPath, label)
                XCTAssertEqual(step(5)?.result, "delivered", label)
                XCTAssertEqual(step(5)?.dma?.path, "iommufd", label)
                XCTAssertEqual(step(5)?.dma?.observed, step(5)?.dma?.expected, label)
                XCTAssertEqual(step(6)?.result, "faulted", label)
                // IOMMU_IOAS_MAP of B's BAR mmap: iommufd cannot pin VM_PFNMAP memory.
                XCTAssertEqual(step(7)?.result, "EFAULT", "\(label): \(step(7)?.detail ?? "")")
            case ("switch-no-acs", false), ("multifunction-e1000e-edu", false):
                let open = try XCTUnwrap(o.steps.first { $0.op == .vfioOpen }, label)
                XCTAssertEqual(open.result, "unsupported", label)
                XCTAssertEqual(open.substeps.map(\.name.rawValue), ["open-iommufd"], label)
            case ("multifunction-e1000e-edu", true):
                // bind-iommufd claims the group: EPERM while e1000e drives nic0, then e1000e gets EBUSY.
                XCTAssertEqual(o.steps.map(\.result), ["ok", "ok", "EPERM", "ok", "ok", "EBUSY", "EBUSY", "ok", "ok"], label)
                XCTAssertEqual(step(2)?.substeps.last?.name.rawValue, "bind-iommufd", label)
                XCTAssertEqual(step(6)?.substeps.last?.name.rawValue, "open-group", "\(label): the group fd is refused while a cdev is open")
            case ("iommu-none", true):
                XCTAssertEqual(o.steps.map(\.result), ["ok", "ok", "ok", "ok", "delivered", "delivered"], label)
                let open = try XCTUnwrap(step(3), label)
                XCTAssertTrue(open.substeps.contains { $0.name.rawValue == "open-group" && $0.detail?.hasPrefix("/dev/vfio/noiommu-") == true }, "\(label): \(open.substeps)")
                XCTAssertEqual(open.substeps.first { $0.name.rawValue == "set-iommu" }?.detail, "VFIO_NOIOMMU_IOMMU", label)
                XCTAssertTrue(o.steps.flatMap(\.kernelLog).contains { $0.contains("noiommu") }, "\(label): the taint is logged")
                // The unprotected case through VFIO: A's write lands in the BAR e1000e drives.
                XCTAssertEqual(step(5)?.dma?.path, "noiommu", label)
                XCTAssertEqual(step(5)?.dma?.observed, step(5)?.dma?.expected, label)
            case ("iommu-none", false):
                XCTAssertEqual(o.steps.map(\.result), ["ok", "ok", "EINVAL", "ENOENT", "delivered", "delivered"], label)
                XCTAssertEqual(step(5)?.dma?.path, "physical", label)
            default:
                XCTFail(label)
            }
        }
        XCTAssertEqual(BootSupport.leftoverQEMU(), [])
    }
}
