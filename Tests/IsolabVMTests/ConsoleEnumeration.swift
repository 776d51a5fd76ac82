import Foundation

/// What the guest kernel's boot log says about PCI: every function it enumerated (by
/// guest path, worked out from the bridges' bus ranges) and the IOMMU group it joined.
/// Lines (5.10–7.3): `pci 0000:01:00.0: [104c:8232] type 01 class 0x060400`,
/// `pci 0000:00:04.0: PCI bridge to [bus 01-04]`, `pci 0000:03:00.0: Adding to iommu group 5`.
struct ConsoleEnumeration {
    struct Function {
        var address: String  // bb:dd.f
        var vendorDevice: String
        var path: String
    }

    var functions: [Function] = []
    /// group number -> paths
    var groups: [Int: Set<String>] = [:]

    init(console: String) {
        var found: [(bus: Int, slot: Int, fn: Int, vd: String)] = []
        var secondary: [Int: (bus: Int, slot: Int, fn: Int)] = [:]  // secondary bus -> bridge
        var groupOf: [String: Int] = [:]  // bb:dd.f -> group
        for raw in console.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            // "pci 0000:…" while no driver is bound, "<driver> 0000:…" after (pcieport, virtio-pci).
            guard let r = raw.range(of: " 0000:") else { continue }
            let rest = raw[r.upperBound...]
            let addr = String(rest.prefix(7))  // bb:dd.f
            let parts = addr.split(whereSeparator: { $0 == ":" || $0 == "." })
            guard parts.count == 3, let b = Int(parts[0], radix: 16), let s = Int(parts[1], radix: 16),
                  let f = Int(parts[2], radix: 16) else { continue }
            let text = rest.dropFirst(7)
            if let open = text.range(of: ": ["), text.contains("] type ") {
                let vd = String(text[open.upperBound...].prefix(9))
                if !found.contains(where: { $0.bus == b && $0.slot == s && $0.fn == f }) { found.append((b, s, f, vd)) }
            } else if let br = text.range(of: "PCI bridge to [bus ") {
                if let sec = Int(text[br.upperBound...].prefix(2), radix: 16) { secondary[sec] = (b, s, f) }
            } else if let g = text.range(of: "Adding to iommu group ") {
                if let n = Int(text[g.upperBound...].prefix { $0.isNumber }) { groupOf[addr] = n }
            }
        }
        func path(bus: Int, slot: Int, fn: Int) -> String {
            let me = String(format: "%02x.%d", slot, fn)
            guard bus != 0, let up = secondary[bus] else { return bus == 0 ? me : "?\(bus)/" + me }
            return path(bus: up.bus, slot: up.slot, fn: up.fn) + "/" + me
        }
        for d in found {
            let address = String(format: "%02x:%02x.%d", d.bus, d.slot, d.fn)
            let p = path(bus: d.bus, slot: d.slot, fn: d.fn)
            functions.append(Function(address: address, vendorDevice: d.vd, path: p))
            if let g = groupOf[address] { groups[g, default: []].insert(p) }
        }
    }

    /// path -> vendor:device
    var byPath: [String: String] {
        Dictionary(functions.map { ($0.path, $0.vendorDevice) }, uniquingKeysWith: { a, _ in a })
    }
}
