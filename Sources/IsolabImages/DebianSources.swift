import Foundation

/// The Debian archive URIs configured on this machine, found at run time in its apt
/// sources, so isolab fetches kernels from whatever mirror the machine already uses.
public struct DebianSources: Equatable, Sendable {
    /// URI of the main archive (the entry serving `<codename>` / `<codename>-updates`).
    public var archive: String
    /// URI of the security archive (the entry serving `<codename>-security`), if configured.
    public var security: String?
    /// Keyring that verifies both; the machine's debian-archive-keyring.
    public var keyring: String

    public static let defaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

    public init(archive: String, security: String?, keyring: String = DebianSources.defaultKeyring) {
        self.archive = archive; self.security = security; self.keyring = keyring
    }

    /// The environment variable naming a Debian mirror; set by `--debian-mirror`.
    public static let mirrorVariable = "ISOLAB_DEBIAN_MIRROR"
    /// The environment variable naming its security archive, when the mirror's sibling
    /// `<mirror>-security` is not it.
    public static let securityMirrorVariable = "ISOLAB_DEBIAN_SECURITY_MIRROR"

    /// The sources isolab fetches from: the mirror `ISOLAB_DEBIAN_MIRROR` names (so any
    /// machine that reaches a Debian mirror can fetch, whatever its own apt serves), else the
    /// Debian URIs this machine's apt is configured with. Either way only Debian's archive
    /// keyring verifies what is fetched.
    public static func configured(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DebianSources {
        if let m = environment[mirrorVariable], !m.isEmpty {
            return try mirror(m, security: environment[securityMirrorVariable].flatMap { $0.isEmpty ? nil : $0 })
        }
        return try fromSystem()
    }

    /// A Debian mirror given by URI: the archive at `uri`, the security archive at `security`,
    /// else at `<uri>-security` when `uri` ends in `/debian` (the archive's own layout), else none
    /// (kernels of `-security` suites are then found only where the plain suite has them).
    public static func mirror(_ uri: String, security: String? = nil) throws -> DebianSources {
        func checked(_ u: String) throws -> String {
            let t = trimSlash(u.trimmingCharacters(in: .whitespaces))
            guard let url = URL(string: t), let scheme = url.scheme?.lowercased(), ["http", "https", "file"].contains(scheme),
                  scheme == "file" || !(url.host ?? "").isEmpty, !t.contains(where: \.isWhitespace) else {
                throw ImagesError.badMirror(u)
            }
            return t
        }
        let archive = try checked(uri)
        let sec = try security.map(checked) ?? (archive.hasSuffix("/debian") ? archive + "-security" : nil)
        return DebianSources(archive: archive, security: sec)
    }

    /// One `deb` entry of an apt configuration (either file format).
    struct Entry { var uris: [String]; var suites: [String]; var signedBy: String? }

    /// Reads `/etc/apt/sources.list.d/*.sources`, `*.list` and `/etc/apt/sources.list`
    /// (or the same under `root`, for tests).
    public static func fromSystem(root: String = "/") throws -> DebianSources {
        let etc = (root as NSString).appendingPathComponent("etc/apt")
        let partsDir = (etc as NSString).appendingPathComponent("sources.list.d")
        var files: [String] = []
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: partsDir)) ?? []).sorted()
        files += names.filter { $0.hasSuffix(".sources") || $0.hasSuffix(".list") }
            .map { (partsDir as NSString).appendingPathComponent($0) }
        files.append((etc as NSString).appendingPathComponent("sources.list"))
        var entries: [Entry] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            let text = String(decoding: data, as: UTF8.self)
            entries += file.hasSuffix(".sources") ? parseDeb822(text) : parseOneLine(text)
        }
        guard let found = derive(from: entries) else {
            throw ImagesError.noDebianSources(searched: [partsDir + "/*.sources", partsDir + "/*.list",
                                                         etc + "/sources.list"])
        }
        return found
    }

    /// Picks the Debian archive and security URIs among apt entries.
    static func derive(from entries: [Entry]) -> DebianSources? {
        var archive: String?, security: String?, keyring: String?
        for entry in entries where isDebian(entry) {
            let isSecurity = entry.suites.contains { $0.hasSuffix("-security") || $0.hasSuffix("/updates") }
            for uri in entry.uris {
                if isSecurity { security = security ?? uri } else { archive = archive ?? uri }
            }
            if let s = entry.signedBy, s.hasPrefix("/"), keyring == nil { keyring = s }
        }
        guard let archive else { return nil }
        return DebianSources(archive: trimSlash(archive), security: security.map(trimSlash),
                             keyring: keyring ?? defaultKeyring)
    }

    /// A Debian entry: signed by Debian's keyring, or served from a `/debian` or
    /// `/debian-security` path. Third-party repositories (other keyrings) are skipped.
    static func isDebian(_ e: Entry) -> Bool {
        if let s = e.signedBy { return s.contains("debian-archive-keyring") }
        return e.uris.contains { uri in
            let path = trimSlash(uri)
            return path.hasSuffix("/debian") || path.hasSuffix("/debian-security")
        }
    }

    static func trimSlash(_ s: String) -> String {
        var s = s; while s.hasSuffix("/") { s.removeLast() }; return s
    }

    /// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Signed-By:`, `Enabled:`).
    static func parseDeb822(_ text: String) -> [Entry] {
        var entries: [Entry] = []
        var fields: [String: String] = [:]
        var lastKey: String?
        func flush() {
            defer { fields = [:]; lastKey = nil }
            guard (fields["types"] ?? "").split(separator: " ").contains("deb"),
                  (fields["enabled"] ?? "yes").lowercased() != "no" else { return }
            let words = { (k: String) in (fields[k] ?? "").split(whereSeparator: \.isWhitespace).map(String.init) }
            let signed = fields["signed-by"].map { $0.trimmingCharacters(in: .whitespaces) }
            entries.append(Entry(uris: words("uris"), suites: words("suites"), signedBy: signed))
        }
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.hasPrefix("#") { continue }
            if line.trimmingCharacters(in: .whitespaces).isEmpty { flush(); continue }
            if line.first == " " || line.first == "\t", let key = lastKey {
                fields[key, default: ""] += "\n" + line.trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].lowercased()
            fields[key] = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            lastKey = key
        }
        flush()
        return entries
    }

    /// One-line format: `deb [opt=val ...] URI suite component...`.
    static func parseOneLine(_ text: String) -> [Entry] {
        var entries: [Entry] = []
        for raw in text.split(separator: "\n") {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if let hash = line.firstIndex(of: "#") { line = String(line[..<hash]) }
            guard line.hasPrefix("deb ") || line.hasPrefix("deb\t") else { continue }
            var rest = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
            var signedBy: String?
            if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
                let options = rest[rest.index(after: rest.startIndex)..<close]
                for opt in options.split(whereSeparator: \.isWhitespace) where opt.hasPrefix("signed-by=") {
                    signedBy = String(opt.dropFirst("signed-by=".count))
                }
                rest = rest[rest.index(after: close)...].trimmingCharacters(in: .whitespaces)
            }
            let words = rest.split(whereSeparator: \.isWhitespace).map(String.init)
            guard words.count >= 2 else { continue }
            entries.append(Entry(uris: [words[0]], suites: [words[1]], signedBy: signedBy))
        }
        return entries
    }

    /// The private `sources.list` for a kernel's suites: the archive for plain suites and
    /// backports, the security archive for `*-security`; only `main`, only amd64.
    public func sourcesList(suites: [String]) -> String {
        suites.compactMap { suite -> String? in
            let uri = suite.hasSuffix("-security") ? security : archive
            guard let uri else { return nil }
            return "deb [arch=amd64 signed-by=\(keyring)] \(uri) \(suite) main"
        }.joined(separator: "\n") + "\n"
    }
}
