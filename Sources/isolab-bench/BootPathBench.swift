import Foundation
import IsolabImages

/// PVH vs bzImage boot of the same image under raw TCG QEMU, per kernel, paired side by side
/// (one PVH boot, then one bzImage boot, each round), to the ready marker and to poweroff.
/// `isolab-bench images` ends with it; `isolab-bench boot [KERNEL…]` runs only it, on the
/// images in the user's cache.
enum BootPathBench {
    static func run(_ args: [String]) {
        do {
            let recipe = try Recipe(directory: Recipe.locate())
            let builder = try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()), recipe: recipe)
            builder.log = { FileHandle.standardError.write(Data("isolab-bench: \($0)\n".utf8)) }
            let ids = args.isEmpty ? try recipe.catalog().kernels.map(\.id) : args
            var images: [(String, GuestImage)] = []
            for id in ids { images.append((id, try builder.build(kernel: try builder.catalog.kernel(id: id)))) }
            try compare(images)
        } catch {
            FileHandle.standardError.write(Data("isolab-bench boot: \(error)\n".utf8))
            exit(1)
        }
    }

    static func compare(_ images: [(String, GuestImage)], rounds: Int = 3) throws {
        let f = ImagesBench.f, median = ImagesBench.median
        print("== boot path per kernel: PVH vmlinux vs bzImage (raw QEMU, TCG, q35 + intel-iommu, -m 512; paired, median of \(rounds))")
        print("kernel\tpvh marker\tbzImage marker\tratio\tpvh poweroff\tbzImage poweroff\tratio")
        for (id, image) in images {
            var marks: [BootPath: [Double]] = [:], totals: [BootPath: [Double]] = [:]
            var failure: String?
            for _ in 0..<rounds where failure == nil {
                for path in [BootPath.pvh, .bzImage] {
                    var boot = GuestBoot(image: image)
                    boot.boot = path
                    if let why = boot.kernel.fallback { failure = "\(path.rawValue): \(why)"; break }
                    let r = try boot.run()
                    guard let s = r.secondsToMarker else { failure = "\(path.rawValue): no marker; tail:\n\(r.tail(10))"; break }
                    marks[path, default: []].append(s)
                    totals[path, default: []].append(r.secondsTotal)
                }
            }
            if let failure { print("\(id):\t\(failure)"); continue }
            let (pm, bm) = (median(marks[.pvh]!), median(marks[.bzImage]!))
            let (pt, bt) = (median(totals[.pvh]!), median(totals[.bzImage]!))
            print("\(id):\t\(f(pm)) s\t\(f(bm)) s\t\(f(pm / bm))×\t\(f(pt)) s\t\(f(bt)) s\t\(f(pt / bt))×"
                  + "\t(pvh \(marks[.pvh]!.map(f).joined(separator: " ")); bzImage \(marks[.bzImage]!.map(f).joined(separator: " ")))")
        }
    }
}
