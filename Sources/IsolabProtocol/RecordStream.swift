#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Why a record stream from a guest was rejected. The guest is untrusted: every malformed input
/// ends up here, never in a crash.
public enum RecordStreamError: Error, Equatable, Sendable, CustomStringConvertible {
    case lineTooLong(line: Int, limit: Int)
    case tooManyRecords(limit: Int)
    case notJSON(line: Int, excerpt: String)
    case outOfSequence(line: Int, expected: Int, got: Int)
    case recordAfterDone(line: Int)
    case wrongCount(line: Int, declared: Int, received: Int)
    case versionMismatch(agent: Int, host: Int)

    public var description: String {
        switch self {
        case .lineTooLong(let line, let limit):
            return "agent record stream: line \(line) is longer than \(limit) bytes"
        case .tooManyRecords(let limit):
            return "agent record stream: more than \(limit) records"
        case .notJSON(let line, let excerpt):
            return "agent record stream: line \(line) is not a record: \(excerpt)"
        case .outOfSequence(let line, let expected, let got):
            return "agent record stream: line \(line) has seq \(got), expected \(expected)"
        case .recordAfterDone(let line):
            return "agent record stream: line \(line) follows the done record"
        case .wrongCount(let line, let declared, let received):
            return "agent record stream: done record (line \(line)) counts \(declared) records, \(received) arrived"
        case .versionMismatch(let agent, let host):
            return "agent speaks protocol \(agent), this isolab speaks \(host): rebuild the guest image"
        }
    }
}

/// Incremental, bounded parser of the agent's JSON-line stream.
///
/// Feed it bytes as they arrive (`feed`), then `finish()` when the channel closes. It keeps every
/// valid record before the first error; after an error it ignores further input. Blank lines
/// and carriage returns (a tty's ONLCR) are tolerated.
public struct RecordStreamParser: Sendable {
    public struct Limits: Sendable {
        public var maxLineBytes: Int
        public var maxRecords: Int
        public init(maxLineBytes: Int = 4 << 20, maxRecords: Int = 100_000) {
            self.maxLineBytes = maxLineBytes
            self.maxRecords = maxRecords
        }
    }

    public let limits: Limits
    public private(set) var records: [Record] = []
    public private(set) var error: RecordStreamError?
    /// True once a valid `done` record arrived.
    public private(set) var complete = false
    private var pending: [UInt8] = []
    private var lineNumber = 0
    private var discardingLongLine = false

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Adds bytes from the channel.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        guard error == nil else { return }
        if bytes.withContiguousStorageIfAvailable({ feedContiguous($0) }) == nil {
            Array(bytes).withUnsafeBufferPointer { feedContiguous($0) }
        }
    }

    /// Splits at newlines a run at a time (the stream can be megabytes of kernel log).
    private mutating func feedContiguous(_ buffer: UnsafeBufferPointer<UInt8>) {
        var start = 0
        while start < buffer.count {
            var end = start
            while end < buffer.count, buffer[end] != UInt8(ascii: "\n") { end += 1 }
            if pending.count + (end - start) > limits.maxLineBytes {
                fail(.lineTooLong(line: lineNumber + 1, limit: limits.maxLineBytes))
                pending = []
                return
            }
            pending.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[start..<end]))
            if end == buffer.count { return }
            lineNumber += 1
            let line = pending
            pending.removeAll(keepingCapacity: true)
            accept(line)
            if error != nil { return }
            start = end + 1
        }
    }

    /// The channel closed: a final line without a newline is parsed too.
    public mutating func finish() {
        guard error == nil, !pending.isEmpty else { return }
        lineNumber += 1
        let line = pending
        pending = []
        accept(line)
    }

    private mutating func fail(_ e: RecordStreamError) {
        if error == nil { error = e }
    }

    private mutating func accept(_ raw: [UInt8]) {
        var line = raw[...]
        while let last = line.last, last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") { line = line.dropLast() }
        while let first = line.first, first == UInt8(ascii: "\r") || first == UInt8(ascii: " ") { line = line.dropFirst() }
        if line.isEmpty { return }
        if complete { return fail(.recordAfterDone(line: lineNumber)) }
        if records.count >= limits.maxRecords { return fail(.tooManyRecords(limit: limits.maxRecords)) }
        guard line.first == UInt8(ascii: "{"),
              let record = try? JSONDecoder().decode(Record.self, from: Data(line)) else {
            return fail(.notJSON(line: lineNumber, excerpt: Self.excerpt(line)))
        }
        guard record.seq == records.count else {
            return fail(.outOfSequence(line: lineNumber, expected: records.count, got: record.seq))
        }
        if record.type == .hello, let v = record.hello?.version, v != isolabProtocolVersion {
            return fail(.versionMismatch(agent: v, host: isolabProtocolVersion))
        }
        if record.type == .done {
            guard record.count == records.count else {
                return fail(.wrongCount(line: lineNumber, declared: record.count ?? -1, received: records.count))
            }
            complete = true
        }
        records.append(record)
    }

    /// At most 60 printable characters of a rejected line, for the error message.
    static func excerpt(_ line: ArraySlice<UInt8>) -> String {
        let shown = line.prefix(60).map { (32...126).contains($0) ? Character(UnicodeScalar($0)) : "?" }
        return String(shown) + (line.count > 60 ? "…" : "")
    }
}

/// Encodes records the way the agent writes them: one JSON object per line, keys sorted.
public struct RecordEncoder: Sendable {
    public init() {}
    public func line(_ record: Record) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(record)) + [UInt8(ascii: "\n")]
    }
}
