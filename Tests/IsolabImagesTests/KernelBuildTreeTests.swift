@testable import IsolabImages
import XCTest

/// Reading a developer's build tree: nothing here builds or boots.
final class KernelBuildTreeTests: XCTestCase {
    let fm = FileManager.default

    func write(_ text: String, _ path: String) throws {
        try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// A configured tree with `config` and the recipe's required modules as `.ko` files (`missing` left out).
    func tree(config: String, missing: Set<String> = [], builtin: [String] = []) throws -> String {
        let dir = try TestSupport.temporaryDirectory("tree")
        try write(config, dir + "/.config")
        try write("6.12.0-dev\n", dir + "/include/config/kernel.release")
        let objects = ["vfio": "drivers/vfio/vfio.o", "vfio_iommu_type1": "drivers/vfio/vfio_iommu_type1.o",
                       "vfio_pci": "drivers/vfio/pci/vfio-pci.o", "irqbypass": "virt/lib/irqbypass.o",
                       "pci_stub": "drivers/pci/pci-stub.o", "e1000e": "drivers/net/ethernet/intel/e1000e/e1000e.o",
                       "nvme": "drivers/nvme/host/nvme.o"]
        var order: [String] = []
        for (name, object) in objects.sorted(by: { $0.key < $1.key }) where !missing.contains(name) && !builtin.contains(name) {
            try write("", dir + "/" + object.dropLast(2) + ".ko")
            order.append(object)
        }
        try write(order.map { $0 + "\n" }.joined(), dir + "/modules.order")
        try write(builtin.map { "kernel/drivers/x/\($0).ko\n" }.joined(), dir + "/modules.builtin")
        return dir
    }

    let good = """
    CONFIG_PCI=y
    CONFIG_BLK_DEV_INITRD=y
    CONFIG_MODULES=y
    CONFIG_IOMMU_SUPPORT=y
    CONFIG_INTEL_IOMMU=y
    CONFIG_IRQ_REMAP=y
    CONFIG_VFIO=m
    CONFIG_VFIO_IOMMU_TYPE1=m
    CONFIG_VFIO_PCI=m
    CONFIG_PCI_STUB=m
    CONFIG_IOMMUFD=m
    CONFIG_VFIO_DEVICE_CDEV=y
    CONFIG_VIRTIO_IOMMU=y
    """

    func testTreeReadsReleaseConfigAndModulesOrderObjectsAsKoFiles() throws {
        let dir = try tree(config: good, builtin: ["e1000e"])
        defer { try? fm.removeItem(atPath: dir) }
        let t = try KernelBuildTree(path: dir + "/./")
        XCTAssertEqual(t.path, URL(fileURLWithPath: dir).standardizedFileURL.path)
        XCTAssertEqual(t.release, "6.12.0-dev")
        XCTAssertEqual(t.modules["vfio_pci"], "drivers/vfio/pci/vfio-pci.ko")
        XCTAssertTrue(t.builtin.contains("e1000e"))
        XCTAssertEqual(t.config["CONFIG_VIRTIO_IOMMU"], "y")
        XCTAssertNil(t.git)
        XCTAssertEqual(t.defaultLabel, "6.12.0-dev")
        XCTAssertEqual(t.requirementProblems(recipe: try Recipe(directory: TestSupport.vmImages)), [])
        XCTAssertEqual(KernelBuildTree.modulePath(orderLine: "kernel/drivers/vfio/vfio.ko"), "drivers/vfio/vfio.ko")
    }

    func testWhatTheGuestNeedsAndTheTreeLacksNamesTheOption() throws {
        let recipe = try Recipe(directory: TestSupport.vmImages)
        let noVFIOPCI = try tree(config: good.replacingOccurrences(of: "CONFIG_VFIO_PCI=m", with: "# CONFIG_VFIO_PCI is not set"),
                                 missing: ["vfio_pci"])
        let unbuilt = try tree(config: good, missing: ["nvme"])
        let noIntel = try tree(config: good.replacingOccurrences(of: "CONFIG_INTEL_IOMMU=y", with: "CONFIG_INTEL_IOMMU=m"))
        defer { for d in [noVFIOPCI, unbuilt, noIntel] { try? fm.removeItem(atPath: d) } }
        XCTAssertEqual(try KernelBuildTree(path: noVFIOPCI).requirementProblems(recipe: recipe),
                       ["CONFIG_VFIO_PCI is not set (the scenarios bind devices to vfio-pci; build it =y or =m)"])
        let p = try KernelBuildTree(path: unbuilt).requirementProblems(recipe: recipe)
        XCTAssertEqual(p.count, 1)
        XCTAssertTrue(p[0].hasPrefix("CONFIG_BLK_DEV_NVME is not set"), "\(p)")
        XCTAssertEqual(try KernelBuildTree(path: noIntel).requirementProblems(recipe: recipe),
                       ["CONFIG_INTEL_IOMMU=m (the catalog fabrics' vIOMMU is intel-iommu; build it =y)"])
        XCTAssertThrowsError(try KernelBuildTree(path: noIntel + "/nope")) { e in
            XCTAssertTrue("\(e)".contains("no such directory"), "\(e)")
        }
    }
}
