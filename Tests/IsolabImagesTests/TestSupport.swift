@testable import IsolabImages
import Foundation
import XCTest

enum TestSupport {
    /// The repository's `vm-images/`.
    static let vmImages: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("vm-images").path
    }()

    /// The cache the boot tests share between runs: `$ISOLAB_CACHE_DIR` or the user's cache.
    static let sharedCache = ImageCache(root: ImageCache.defaultRoot())

    /// Directory of the built products (`isolab` sits beside the test bundle).
    static var productsDirectory: String {
        (Bundle.main.executablePath.map { ($0 as NSString).deletingLastPathComponent })
            ?? FileManager.default.currentDirectoryPath + "/.build/debug"
    }

    static func isolabExecutable() throws -> String {
        let path = productsDirectory + "/isolab"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ImagesError.io(path: path, problem: "the isolab executable is not built; run `swift build` first")
        }
        return path
    }

    static func builder(cache: ImageCache = sharedCache) throws -> ImageBuilder {
        let b = try ImageBuilder(cache: cache, recipe: Recipe(directory: vmImages))
        b.log = { print("isolab: \($0)") }
        return b
    }

    static func temporaryDirectory(_ label: String) throws -> String {
        let dir = NSTemporaryDirectory() + "isolab-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs a command; returns status and combined output.
    @discardableResult
    static func run(_ args: [String], environment: [String: String]? = nil) throws -> (Int32, String) {
        let r = try Shell.run(args, environment: environment)
        return (r.status, r.text + r.errorText)
    }
}
