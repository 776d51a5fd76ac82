import IsolabAgentCore
import IsolabProtocol

/// Reads what the guest enumerated: /sys/bus/pci/devices, config space, /sys/kernel/iommu_groups.
enum Sysfs {
    static let devices = "/sys/bus/pci/devices"

    static func device(_ bdf: String) -> String { "\(devices)/\(bdf)" }

    static func driver(of bdf: String) -> String? { Posix.linkName("\(device(bdf))/driver") }

    static func group(of bdf: String) -> Int? { Posix.linkName("\(device(bdf))/iommu_group").flatMap { Int($0) } }
    /// A group's `name` attribute (`vfio-noiommu` for VFIO's fake no-IOMMU groups), if it has one.
    static func groupName(_ id: Int) -> String? {
        Posix.text("/sys/kernel/iommu_groups/\(id)/name")
    }

    /// Waits until no PCI function's driver or IOMMU group changes for 400 ms (at most 5 s).
    /// A module that registers an IOMMU (virtio_iommu) makes the driver core retry every
    /// deferred probe from a workqueue (`driver_deferred_probe_trigger()`), after modprobe has
    /// returned; on 6.12 those retries are what groups the functions, so an inventory read at
    /// once can miss groups and drivers the saved guest then shows.
    static func waitForProbesToSettle() {
        func state() -> [String] { Posix.list(devices).map { "\($0) \(driver(of: $0) ?? "-") \(group(of: $0) ?? -1)" } }
        var last = state()
        var stable = 0
        for _ in 0..<100 where stable < 8 {
            Posix.sleep(milliseconds: 50)
            let now = state()
            stable = now == last ? stable + 1 : 0
            last = now
        }
    }

    static func config(of bdf: String) -> ConfigSpace { ConfigSpace(Posix.read("\(device(bdf))/config", limit: 4096) ?? []) }

    /// Guest path of every function, by BDF.
    static func paths() -> [String: String] {
        var out: [String: String] = [:]
        for bdf in Posix.list(devices) {
            if let real = Posix.realpath(device(bdf)), let path = GuestPath.fromSysfs(real) { out[bdf] = path }
        }
        return out
    }

    /// Start of BAR `index` (guest-physical) from the `resource` file, nil if unset.
    static func barAddress(of bdf: String, index: Int = 0) -> (start: UInt64, size: UInt64)? {
        guard let text = Posix.text("\(device(bdf))/resource") else { return nil }
        let lines = text.split(separator: "\n")
        guard index < lines.count else { return nil }
        let f = lines[index].split(separator: " ")
        guard f.count >= 2, let start = Hex.parse(f[0]), let end = Hex.parse(f[1]), start != 0, end > start else { return nil }
        return (start, end - start + 1)
    }

    /// Guest path of each bus number: `""` for the root bus, a bridge's path for its secondary
    /// bus (config byte 0x19), to name alias requesters that are no function.
    static func busPaths(_ functions: [FunctionRecord]) -> [Int: String] {
        var out: [Int: String] = [:]
        for f in functions {
            guard let address = PCIAddress(f.bdf) else { continue }
            if !f.path.contains("/") { out[address.bus] = "" }
            if f.headerType == 1, let secondary = config(of: f.bdf).u8(0x19), secondary != 0 { out[secondary] = f.path }
        }
        return out
    }

    /// What of `inventory` can change while the guest runs, read afresh: the functions present
    /// with each one's driver and IOMMU group, the groups, each ACS control register, and the
    /// VFIO cdev region. The rest of an inventory is read-only hardware (IDs, class, header type,
    /// capabilities) or fixed at boot (release, command line, the IOMMU, the modules on disk).
    /// A guest put back into its snapshot whose state equals the saved guest's reports the saved
    /// inventory instead of reading it again (``Agent/reportInventory()``).
    static func mutableState(of inventory: Inventory) -> [String] {
        let acsOffset = Dictionary(inventory.functions.compactMap { f in f.acs.map { (f.bdf, $0.offset) } },
                                   uniquingKeysWith: { a, _ in a })
        var state = Posix.list(devices).map { bdf -> String in
            var line = "\(bdf) \(driver(of: bdf) ?? "-") \(group(of: bdf) ?? -1)"
            if let offset = acsOffset[bdf] { line += " acs \(Posix.read("\(device(bdf))/config", at: offset + 6, count: 2) ?? [])" }
            return line
        }
        state.append("groups \(Posix.list("/sys/kernel/iommu_groups").joined(separator: ","))")
        state.append("vfio-dev \(hasCharacterRegion("vfio-dev")) \(Posix.exists("/dev/vfio/devices"))")
        return state
    }

    /// Whether /proc/devices lists a character device region named `name`.
    static func hasCharacterRegion(_ name: String) -> Bool {
        for line in (Posix.text("/proc/devices") ?? "").split(separator: "\n") {
            if line.hasPrefix("Block devices") { break }
            if line.split(separator: " ").last.map(String.init) == name { return true }
        }
        return false
    }

    static func inventory(preloadFailures: [String: String]) -> Inventory {
        let paths = paths()
        var functions: [FunctionRecord] = []
        for bdf in Posix.list(devices) {
            let dir = device(bdf)
            let cfg = config(of: bdf)
            let vendor = Posix.text("\(dir)/vendor").flatMap(Hex.parse) ?? 0xffff
            let dev = Posix.text("\(dir)/device").flatMap(Hex.parse) ?? 0xffff
            let cls = Posix.text("\(dir)/class").flatMap(Hex.parse) ?? 0
            let acs = cfg.acs.map { ACSRecord(offset: $0.offset, capability: $0.capability, control: $0.control) }
            functions.append(FunctionRecord(
                path: paths[bdf] ?? "?\(bdf)", bdf: bdf,
                vendorDevice: "\(Hex.digits(vendor & 0xffff, width: 4)):\(Hex.digits(dev & 0xffff, width: 4))",
                classCode: "0x" + Hex.digits(cls & 0xff_ffff, width: 6),
                // pdev->multifunction as pci_scan_slot() sets it: the header bit of function 0,
                // and every function above 0 that exists.
                headerType: cfg.headerType ?? -1, multifunction: cfg.multifunction || (PCIAddress(bdf)?.function ?? 0) > 0,
                driver: driver(of: bdf), group: group(of: bdf), pcieType: cfg.pcieType, acs: acs,
                sriov: cfg.sriov.map { SRIOVRecord(offset: $0.offset, totalVFs: $0.totalVFs, firstVFOffset: $0.firstVFOffset,
                                                   vfStride: $0.vfStride, vfDevice: Hex.digits(UInt64($0.vfDeviceID), width: 4)) }))
        }
        functions.sort { $0.path < $1.path }
        var groups: [GroupRecord] = []
        for name in Posix.list("/sys/kernel/iommu_groups") {
            guard let id = Int(name) else { continue }
            let members = Posix.list("/sys/kernel/iommu_groups/\(name)/devices").map { paths[$0] ?? "?\($0)" }.sorted()
            groups.append(GroupRecord(id: id, members: members))
        }
        groups.sort { $0.id < $1.id }
        var inventory = Inventory(kernelRelease: Posix.kernelRelease(), cmdline: Posix.text("/proc/cmdline") ?? "",
                         iommu: Drivers.iommuKind(classEntries: Posix.list("/sys/class/iommu"),
                                                  vendorOf: { Posix.text("\(device($0))/vendor").flatMap(Hex.parse) }),
                         functions: functions, groups: groups, preloadFailures: preloadFailures)
        // The iommufd / VFIO cdev path, without loading anything: /dev/iommu exists when IOMMUFD
        // is built in or loaded, else the module is on disk. A loaded vfio built with
        // VFIO_DEVICE_CDEV has registered the `vfio-dev` character region (vfio_cdev_init; the
        // nodes are /dev/vfio/devices/vfioN), and that option makes vfio.ko depend on iommufd.ko.
        // (The vfio-dev *class* is no sign of it: vfio has had it since 6.1, cdevs or not.)
        let deps = ModulesIndex(release: Posix.kernelRelease())
        inventory.iommufd = Posix.exists("/dev/iommu") || Posix.exists("/sys/module/iommufd") || deps.has("iommufd")
        inventory.vfioCdev = hasCharacterRegion("vfio-dev") || Posix.exists("/dev/vfio/devices")
            || deps.dependencies(of: "vfio").contains("iommufd")
        return inventory
    }
}

/// The guest's `modules.dep` and `modules.builtin`: which modules exist and what they need.
struct ModulesIndex {
    /// Module name → names of the modules it depends on.
    var dep: [String: [String]] = [:]
    var builtin: Set<String> = []

    init(release: String) {
        let dir = "/lib/modules/\(release)"
        for line in (Posix.text(dir + "/modules.dep") ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard let first = parts.first else { continue }
            let needs = parts.count > 1 ? parts[1].split(separator: " ").map { Self.name(String($0)) } : []
            dep[Self.name(String(first))] = needs
        }
        for line in (Posix.text(dir + "/modules.builtin") ?? "").split(separator: "\n") { builtin.insert(Self.name(String(line))) }
    }

    /// `kernel/drivers/vfio/vfio.ko.xz` → `vfio` (dashes as underscores, as the kernel names modules).
    static func name(_ path: String) -> String {
        let file = path.split(separator: "/").last.map(String.init) ?? path
        return String(file.prefix(while: { $0 != "." }).map { $0 == "-" ? "_" : $0 })
    }

    func has(_ module: String) -> Bool { dep[module] != nil || builtin.contains(module) }
    func dependencies(of module: String) -> [String] { dep[module] ?? [] }
}
