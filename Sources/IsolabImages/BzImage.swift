import Foundation

/// Facts read from an x86 bzImage's real-mode setup header (Documentation/arch/x86/boot.rst).
public struct BzImage: Sendable {
    /// Full kernel version string, e.g. `6.1.0-56-amd64 (debian-kernel@…) #1 SMP … Debian 6.1.192-2 …`.
    public var versionString: String
    /// The release alone (`uname -r`): the first word of the version string.
    public var kernelRelease: String { String(versionString.split(separator: " ").first ?? "") }

    /// Model generation derived from the release: `major.minor` (`6.12.118+deb13-amd64` → `6.12`).
    public var generation: String? { BzImage.generation(ofRelease: kernelRelease) }

    /// Reads the header of a bzImage file.
    public init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ImagesError.notABzImage(path: path, problem: "cannot open it")
        }
        defer { try? handle.close() }
        // The version string lies within the setup sectors (at most 64 KiB after the header).
        let data = (try? handle.read(upToCount: 0x10000 + 0x200)) ?? Data()
        self = try BzImage(data: data, path: path)
    }

    /// Parses bytes beginning at the start of a bzImage.
    public init(data: Data, path: String = "bzImage") throws {
        let bytes = [UInt8](data)
        guard bytes.count >= 0x210 else { throw ImagesError.notABzImage(path: path, problem: "shorter than a setup header") }
        // 0x202: "HdrS" magic; 0x206: boot protocol version; 0x20E: kernel_version pointer.
        guard bytes[0x202..<0x206].elementsEqual("HdrS".utf8) else {
            throw ImagesError.notABzImage(path: path, problem: "no 'HdrS' setup header magic at 0x202")
        }
        let proto = Int(bytes[0x206]) | Int(bytes[0x207]) << 8
        guard proto >= 0x200 else {
            throw ImagesError.notABzImage(path: path, problem: String(format: "boot protocol %x.%02x predates version strings", proto >> 8, proto & 0xff))
        }
        let pointer = Int(bytes[0x20E]) | Int(bytes[0x20F]) << 8
        // The pointer is relative to the start of the setup header sector (offset 0x200).
        let start = pointer + 0x200
        guard pointer != 0, start < bytes.count else {
            throw ImagesError.notABzImage(path: path, problem: "kernel_version pointer \(pointer) is outside the setup code")
        }
        let end = bytes[start...].firstIndex(of: 0) ?? bytes.count
        let text = String(decoding: bytes[start..<end], as: UTF8.self)
        guard let first = text.first, first.isNumber else {
            throw ImagesError.notABzImage(path: path, problem: "version string '\(text.prefix(40))' does not start with a release")
        }
        versionString = text
    }

    /// `major.minor` of a release string, nil when it does not start with two numbers.
    public static func generation(ofRelease release: String) -> String? {
        let digitsAndDots = release.prefix { $0.isNumber || $0 == "." }
        let parts = digitsAndDots.split(separator: ".")
        guard parts.count >= 2 else { return nil }
        return "\(parts[0]).\(parts[1])"
    }
}
