@testable import IsolabImages
import XCTest

final class ModuleIndexTests: XCTestCase {
    // Shaped like 6.1's modules.dep: vfio-pci split into vfio-pci-core, compressed names.
    let dep = """
    kernel/drivers/vfio/vfio.ko.xz:
    kernel/drivers/vfio/vfio_iommu_type1.ko.xz: kernel/drivers/vfio/vfio.ko.xz
    kernel/virt/lib/irqbypass.ko.xz:
    kernel/drivers/vfio/vfio_virqfd.ko.xz: kernel/drivers/vfio/vfio.ko.xz
    kernel/drivers/vfio/pci/vfio-pci-core.ko.xz: kernel/drivers/vfio/vfio_virqfd.ko.xz kernel/drivers/vfio/vfio.ko.xz kernel/virt/lib/irqbypass.ko.xz
    kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/pci/vfio-pci-core.ko.xz kernel/drivers/vfio/vfio_virqfd.ko.xz kernel/drivers/vfio/vfio.ko.xz kernel/virt/lib/irqbypass.ko.xz
    kernel/drivers/nvme/host/nvme.ko.zst: kernel/drivers/nvme/host/nvme-core.ko.zst
    kernel/drivers/nvme/host/nvme-core.ko.zst:
    """

    func testClosureListsEachModuleAfterItsDependenciesOnce() {
        let index = ModuleIndex(modulesDep: dep, modulesBuiltin: "kernel/drivers/virtio/virtio_pci.ko\n")
        let c = index.closure(of: ["vfio-pci", "vfio_iommu_type1", "nvme", "virtio_pci", "virtio_iommu"])
        XCTAssertEqual(Set(c.modules), ["vfio", "vfio_virqfd", "irqbypass", "vfio_pci_core", "vfio_pci",
                                        "vfio_iommu_type1", "nvme_core", "nvme"])
        XCTAssertEqual(c.modules.count, 8)
        func before(_ a: String, _ b: String) { XCTAssertLessThan(c.modules.firstIndex(of: a)!, c.modules.firstIndex(of: b)!, "\(a) before \(b)") }
        before("vfio", "vfio_pci_core"); before("vfio_pci_core", "vfio_pci"); before("irqbypass", "vfio_pci_core")
        before("vfio_virqfd", "vfio_pci_core"); before("nvme_core", "nvme")
        XCTAssertEqual(c.builtin, ["virtio_pci"])
        XCTAssertEqual(c.absent, ["virtio_iommu"])
    }

    func testClosureFollowsDirectOnlyDependenciesTransitively() {
        let index = ModuleIndex(modulesDep: "a.ko: b.ko\nb.ko: c.ko\nc.ko:\n")
        XCTAssertEqual(index.closure(of: ["a"]).modules, ["c", "b", "a"])
    }

    func testModuleNamesNormaliseDashesAndCompression() {
        XCTAssertEqual(moduleName("kernel/drivers/vfio/pci/vfio-pci-core.ko.xz"), "vfio_pci_core")
        XCTAssertEqual(moduleName("pci-stub"), "pci_stub")
        XCTAssertEqual(moduleName("x/nvme.ko.zst"), "nvme")
    }

    func testModuleListParsingAndErrors() throws {
        let list = try parseModuleList("# c\nvfio\nvirtio-iommu optional # where built\n\n")
        XCTAssertEqual(list, [ModuleRequest(name: "vfio", required: true), ModuleRequest(name: "virtio_iommu", required: false)])
        XCTAssertThrowsError(try parseModuleList("vfio\nnvme maybe\n", file: "m.list")) { e in
            XCTAssertEqual(e as? ImagesError, .invalidFile(file: "m.list", line: 2, field: "nvme",
                                                           problem: "'maybe' is not a need", accepted: "required, optional"))
        }
    }

    func testRepositoryModuleListRequiresTheVFIOStack() throws {
        let recipe = try Recipe(directory: TestSupport.vmImages)
        let required = Set(recipe.modules.filter(\.required).map(\.name))
        XCTAssertTrue(required.isSuperset(of: ["vfio", "vfio_iommu_type1", "vfio_pci", "irqbypass", "pci_stub", "e1000e", "nvme"]))
    }

    func testMissingRequiredModuleIsReportedAtBuildTime() throws {
        let recipe = try Recipe(directory: TestSupport.vmImages)
        let builder = InitramfsBuilder(recipe: recipe, busybox: "/bin/busybox")
        // A kernel configured without VFIO: only nvme and e1000e exist.
        let index = ModuleIndex(modulesDep: "kernel/nvme.ko:\nkernel/e1000e.ko:\nkernel/pci-stub.ko:\n",
                                modulesBuiltin: "kernel/virt/lib/irqbypass.ko\n")
        XCTAssertThrowsError(try builder.plan(index: index, kernelRelease: "9.9.9-novfio")) { e in
            XCTAssertEqual(e as? ImagesError, .missingModules(kernelRelease: "9.9.9-novfio",
                                                              modules: ["vfio", "vfio_iommu_type1", "vfio_pci"]))
            XCTAssertTrue("\(e)".contains("modules.builtin"))
        }
    }
}
