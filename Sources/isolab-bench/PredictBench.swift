import Dispatch
import IsolabModel

/// `isolab-bench predict`: times `Predictor.predict` on generated fabrics of 100 to 10,000
/// devices (switch trees, nested switches, bridges, multifunction slots). Prints figures only.
enum PredictBench {
    /// A fabric of about `devices` endpoints under up to 200 root ports (25 slots × 8 functions).
    static func fabric(devices: Int) -> Topology {
        let perPort = 50
        let ports = max(1, min(200, (devices + perPort - 1) / perPort))
        var made = 0
        var nodes: [FabricNode] = []
        func dev(_ model: DeviceModel, slot: Int = 0, function: Int = 0) -> FabricNode {
            made += 1
            return FabricNode(id: "d\(made)", kind: .device(model, dmaMaskBits: nil), slot: slot, function: function)
        }
        for p in 0..<ports {
            let budget = min(perPort, devices - made)
            guard budget > 0 else { break }
            var children: [FabricNode] = []
            switch p % 4 {
            case 0:  // switch with one endpoint per downstream port
                let dps = (0..<budget).map { i in FabricNode(id: "p\(p)dp\(i)", kind: .downstreamPort(acs: nil), slot: i, children: [dev(.edu)]) }
                children = [FabricNode(id: "p\(p)sw", kind: .switchUpstream, slot: 0, children: dps)]
            case 1:  // nested switches: 4 inner switches of budget/4 ports
                let inner = max(1, budget / 4)
                let outer = (0..<4).map { o in
                    FabricNode(id: "p\(p)o\(o)", kind: .downstreamPort(acs: nil), slot: o, children: [
                        FabricNode(id: "p\(p)o\(o)sw", kind: .switchUpstream, slot: 0, children: (0..<inner).map { i in
                            FabricNode(id: "p\(p)o\(o)dp\(i)", kind: .downstreamPort(acs: nil), slot: i, children: made < devices ? [dev(.edu)] : [])
                        })
                    ])
                }
                children = [FabricNode(id: "p\(p)sw", kind: .switchUpstream, slot: 0, children: outer)]
            case 2:  // pcie-pci-bridge with devices and a pci-bridge with more
                let half = budget / 2
                let inner = (0..<(budget - half)).map { i in dev(.edu, slot: i + 1) }
                var kids = (0..<half).map { i in dev(.edu, slot: i + 1) }
                kids.append(FabricNode(id: "p\(p)pb", kind: .pciBridge, slot: half + 1, children: inner))
                children = [FabricNode(id: "p\(p)br", kind: .pciePCIBridge, slot: 0, children: kids)]
            default:  // switch whose ports each hold a multifunction slot of four
                let dps = (0..<max(1, budget / 4)).map { i in
                    FabricNode(id: "p\(p)dp\(i)", kind: .downstreamPort(acs: nil), slot: i, children: [
                        dev(.e1000e, function: 0), dev(.edu, function: 1), dev(.nvme, function: 2), dev(.edu, function: 3),
                    ])
                }
                children = [FabricNode(id: "p\(p)sw", kind: .switchUpstream, slot: 0, children: dps)]
            }
            nodes.append(FabricNode(id: "rp\(p)", kind: .rootPort(acs: p % 3 != 0), slot: 1 + p / 8, function: p % 8, children: children))
        }
        return Topology(name: "generated-\(devices)", fabric: nodes)
    }

    static func time(_ body: () -> Void) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    static func run() {
        print("predict benchmark (median of 5 runs, kernel 6.1, intel)")
        print("devices  functions  groups  hazards  median ms  ms per 1k functions")
        var results: [(Int, Double)] = []
        for n in [100, 1_000, 3_000, 10_000] {
            let t = fabric(devices: n)
            var p: KernelPrediction?
            var times: [Double] = []
            for _ in 0..<5 { times.append(time { p = Predictor.predict(t, kernel: .v6_1) }) }
            let median = times.sorted()[2]
            let fns = p!.fabric.functions.count
            let endpoints = p!.fabric.endpoints.count
            results.append((endpoints, median))
            print(String(repeating: " ", count: max(0, 7 - String(endpoints).count)) + "\(endpoints)  \(fns)  \(p!.groups.count)  \(p!.hazardCount)  \(fmt(median))  \(fmt(median / Double(fns) * 1000))")
        }
        let small = results.first!, large = results.last!
        let growth = (large.1 / small.1) / (Double(large.0) / Double(small.0))
        print("goal: < 100 ms at 1,000 devices: \(fmt(results[1].1)) ms")
        print("growth 100 -> 10,000 devices: time x\(fmt(large.1 / small.1)) for devices x\(fmt(Double(large.0) / Double(small.0))) (1.0 = linear): \(fmt(growth))")
    }

    static func fmt(_ v: Double) -> String {
        let r = (v * 100).rounded() / 100
        return "\(r)"
    }
}
