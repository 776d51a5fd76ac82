import Foundation
import IsolabImages
import IsolabModel
import IsolabProtocol
import IsolabVM
import XCTest

/// The PVH boot is only worth having if it is honest: the same fabric and scenario booted from
/// the PVH `vmlinux` and from the bzImage must show the kernel doing the same things.
final class BootPathBootTests: XCTestCase {
    /// What must not depend on how the kernel was entered.
    struct Facts: Equatable, CustomStringConvertible {
        var outcome: VMObservation.Outcome
        var groups: Set<Set<String>>
        /// path → vendor:device, driver, ACS capability and control.
        var functions: [String: String]
        /// index → result, errno.
        var steps: [String]

        init(_ o: VMObservation) {
            outcome = o.outcome
            groups = Set((o.inventory?.groups ?? []).map { Set($0.members) })
            functions = Dictionary(uniqueKeysWithValues: (o.inventory?.functions ?? []).map { f in
                (f.path, "\(f.vendorDevice) driver \(f.driver ?? "-") acs \(f.acs.map { "\($0.capability)/\($0.control)" } ?? "-")")
            })
            steps = o.steps.map { "\($0.index) \($0.result) errno \($0.errno.map(String.init) ?? "-")" }
        }

        var description: String { "\(outcome.rawValue) groups \(groups) functions \(functions) steps \(steps)" }
    }

    /// switch-no-acs and multifunction-e1000e-edu (first scenario each) on 5.10 and 6.1, each
    /// booted both ways, two guests at a time: 8 boots.
    func testPVHAndBzImageBootsObserveTheSameOnSwitchAndMultifunctionFabricsOn5_10And6_1() throws {
        var requests: [RunRequest] = []
        for kernel in ["5.10", "6.1"] {
            for name in ["switch-no-acs", "multifunction-e1000e-edu"] {
                let topology = try BootSupport.topology(name)
                for boot in [BootPath.pvh, .bzImage] {
                    var r = try BootSupport.request(topology, kernel: kernel, scenario: topology.scenarios.first)
                    r.boot = boot
                    requests.append(r)
                }
            }
        }
        let observations = try BootSupport.run(requests)
        XCTAssertEqual(BootSupport.leftoverQEMU(of: requests), [])
        for i in stride(from: 0, to: requests.count, by: 2) {
            let (pvh, bz) = (observations[i], observations[i + 1])
            let what = "\(pvh.topology) on \(pvh.kernel)"
            XCTAssertEqual(pvh.boot, BootRecord(kernel: try XCTUnwrap(requests[i].image.vmlinuxPath), entry: "pvh",
                                                requested: "pvh", firmware: "seabios"), what)
            XCTAssertEqual(bz.boot, BootRecord(kernel: try XCTUnwrap(requests[i].image.bzImagePath), entry: "bzimage",
                                               requested: "bzimage", firmware: "seabios"), what)
            XCTAssertEqual(pvh.outcome, .completed, "\(what) pvh: \(pvh.problem ?? "")\n\(pvh.consoleTail.joined(separator: "\n"))")
            XCTAssertFalse(pvh.steps.isEmpty, what)
            XCTAssertNotNil(pvh.inventory, what)
            XCTAssertEqual(Facts(pvh), Facts(bz), "\(what): the PVH boot observed something else than the bzImage boot")
            XCTAssertEqual(pvh.inventory?.kernelRelease, bz.inventory?.kernelRelease, what)
            print(String(format: "boot path %@: pvh boot %.1f s, bzImage boot %.1f s", what, pvh.timing.boot, bz.timing.boot))
        }
    }
}
