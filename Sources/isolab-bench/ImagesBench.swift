import Foundation
import IsolabImages

/// `isolab-bench images`: cold build per kernel, warm build of all, initramfs sizes, and
/// boot-to-marker per kernel under TCG QEMU, PVH and bzImage side by side (`BootPathBench`).
enum ImagesBench {
    static func run() {
        do { try measure() } catch {
            FileHandle.standardError.write(Data("isolab-bench images: \(error)\n".utf8))
            exit(1)
        }
    }

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = Date(); try body(); return Date().timeIntervalSince(start)
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
    static func f(_ x: Double) -> String { String(format: "%.2f", x) }

    static func measure() throws {
        let recipe = try Recipe(directory: Recipe.locate())
        let catalog = try recipe.catalog()
        let shared = ImageCache(root: ImageCache.defaultRoot())
        let temp = NSTemporaryDirectory() + "isolab-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: temp) }
        let cold = ImageCache(root: temp)

        // Download once into the user's cache; the cold builds reuse those .debs.
        let sharedBuilder = try ImageBuilder(cache: shared, recipe: recipe)
        var downloadBytes: [String: Int] = [:]
        for k in catalog.available {
            let r = try sharedBuilder.resolver.resolve(k)
            _ = try sharedBuilder.resolver.debs(for: r)
            downloadBytes[k.id] = r.packages.reduce(0) { $0 + $1.size }
        }
        try FileManager.default.createDirectory(atPath: temp + "/debs", withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: shared.root + "/debs") {
            let src = shared.root + "/debs/" + name, dst = temp + "/debs/" + name
            if link(src, dst) != 0 { try FileManager.default.copyItem(atPath: src, toPath: dst) }
        }

        print("== cold build per kernel (empty cache at \(temp): apt-get update + resolve + unpack + depmod + initramfs;")
        print("   the .debs are reused from \(shared.root)/debs, so no download time is included)")
        var images: [String: GuestImage] = [:]
        for k in catalog.available {
            let builder = try ImageBuilder(cache: cold, recipe: recipe)
            builder.refresh = true
            var image: GuestImage?
            let t = try seconds { image = try builder.build(kernel: k) }
            images[k.id] = image!
            let mib = Double(downloadBytes[k.id] ?? 0) / 1_048_576
            print("cold \(k.id):\t\(f(t)) s\t(\(image!.metadata.packages.first!.version), .debs \(String(format: "%.1f", mib)) MiB)")
        }

        print("== warm `images build` of all \(catalog.available.count) kernels (new builder each run, as a new process; median of 5)")
        var warm: [Double] = []
        for _ in 0..<5 {
            warm.append(try seconds {
                let b = try ImageBuilder(cache: cold, recipe: recipe)
                for k in catalog.available { _ = try b.build(kernel: k) }
            })
        }
        print("warm all:\t\(String(format: "%.4f", median(warm))) s\t(goal < 1 s)")

        print("== initramfs size per kernel (uncompressed newc cpio)")
        for k in catalog.available {
            let m = images[k.id]!.metadata
            print("initramfs \(k.id):\t\(m.initramfsBytes / 1024) KiB\t\(m.modules.count) modules\t\(m.kernelRelease)")
        }

        try BootPathBench.compare(catalog.available.map { ($0.id, images[$0.id]!) })
    }
}
