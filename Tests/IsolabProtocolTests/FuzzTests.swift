import Foundation
import XCTest
@testable import IsolabProtocol

/// The guest is untrusted: whatever bytes arrive, the parser must not crash, must respect its
/// limits and must keep the valid records that came before the first error.
final class FuzzTests: XCTestCase {
    /// Deterministic generator (SplitMix64), so a failure names a reproducible case.
    struct Rand {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        mutating func int(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
        mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
        mutating func pick<T>(_ xs: [T]) -> T { xs[int(xs.count)] }
    }

    static let limits = RecordStreamParser.Limits(maxLineBytes: 4096, maxRecords: 50)

    /// A valid stream of `n` records (hello, inventory, steps, done), as lines.
    static func validLines(_ n: Int, _ r: inout Rand) -> [[UInt8]] {
        var records = [Record(seq: 0, type: .hello, hello: Hello(runID: "fuzz", agent: "isolab-agent"))]
        records.append(Record(seq: 1, type: .inventory, inventory: Inventory(
            kernelRelease: "6.1.0-56-amd64", cmdline: "console=ttyS0", iommu: "intel",
            functions: [FunctionRecord(path: "04.0/00.0", bdf: "0000:01:00.0", vendorDevice: "1234:11e8",
                                       classCode: "0x00ff00", headerType: 0, multifunction: false, driver: nil,
                                       group: 3, pcieType: nil, acs: nil)],
            groups: [GroupRecord(id: 3, members: ["04.0/00.0"])])))
        while records.count < n {
            let i = records.count
            records.append(r.int(2) == 0
                ? Record(seq: i, type: .stepStart, index: i)
                : Record(seq: i, type: .step, step: StepRecord(index: i, op: r.pick(PlanStep.Op.allCases), result: "EBUSY",
                                                              errno: 16, kernelLog: ["DMAR: \u{1F4A5} ü"])))
        }
        records.append(Record(seq: records.count, type: .done, count: records.count))
        return records.map { try! RecordEncoder().line($0) }
    }

    /// Lines joined (FlattenSequence is slow unoptimized: this test runs in debug builds).
    static func flat(_ lines: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(lines.reduce(0) { $0 + $1.count })
        for l in lines { out.append(contentsOf: l) }
        return out
    }

    /// Valid streams, encoded once: short ones, and a few longer than the record limit.
    static let pool: (short: [[[UInt8]]], long: [[[UInt8]]]) = {
        var r = Rand(state: 42)
        return ((0..<48).map { validLines(2 + $0 % 6, &r) }, (0..<4).map { validLines(60 + $0 * 5, &r) })
    }()

    /// One generated input: a mutation of a valid stream or plain garbage.
    static func input(_ r: inout Rand) -> [UInt8] {
        var lines = r.pick(pool.short)
        switch r.int(12) {
        case 0: return r.bytes(r.int(600))
        case 1:  // flip bytes
            var flat = flat(lines)
            for _ in 0..<(1 + r.int(6)) where !flat.isEmpty { flat[r.int(flat.count)] = UInt8(truncatingIfNeeded: r.next()) }
            return flat
        case 2:  // truncate anywhere
            let flat = flat(lines)
            return Array(flat.prefix(r.int(flat.count + 1)))
        case 3:  // swap two lines: out-of-order seq
            if lines.count > 2 { lines.swapAt(r.int(lines.count), r.int(lines.count)) }
        case 4:  // a huge line
            lines.insert([UInt8](repeating: UInt8(ascii: "a"), count: 4000 + r.int(400)) + [10], at: r.int(lines.count))
        case 5:  // deep nesting
            let depth = r.int(50) == 0 ? 2000 + r.int(3000) : 1 + r.int(200)
            lines.insert(Array(("{\"seq\":1,\"x\":" + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}\n").utf8), at: 1)
        case 6:  // bogus numbers
            let n = r.pick(["1e999", "-0", "99999999999999999999999", "1.5", "NaN", "0x10", "-1", "\"1\"", "null"])
            lines.insert(Array("{\"seq\":\(n),\"type\":\"hello\"}\n".utf8), at: r.int(lines.count))
        case 7:  // invalid UTF-8 inside a string
            lines.insert(Array("{\"seq\":1,\"type\":\"fatal\",\"message\":\"".utf8) + [0xff, 0xc0, 0x80, 0xed, 0xa0, 0x80] + Array("\"}\n".utf8), at: 1)
        case 8:  // records after done, or a wrong count
            lines.append(lines[0])
        case 9:  // too many records (rarely: long streams are slow to parse)
            if r.int(20) == 0 { lines = r.pick(pool.long) }
        case 10:  // random splice of garbage
            lines.insert(r.bytes(r.int(80)) + [10], at: r.int(lines.count))
        default:  // CR, blank lines, spaces
            lines = lines.map { r.int(2) == 0 ? Array($0.dropLast()) + [13, 10, 10] : [32] + $0 }
        }
        return flat(lines)
    }

    func testParserSurvivesGeneratedStreams() {
        var r = Rand(state: 0x15_01ab)
        let count = 100_000
        var complete = 0, failed = 0
        for n in 0..<count {
            let bytes = Self.input(&r)
            var parser = RecordStreamParser(limits: Self.limits)
            // Feed in random chunks, as a serial line delivers them.
            var i = 0
            while i < bytes.count {
                let k = 1 + r.int(300)
                parser.feed(bytes[i..<min(bytes.count, i + k)])
                i += k
            }
            parser.finish()
            XCTAssertLessThanOrEqual(parser.records.count, Self.limits.maxRecords, "case \(n)")
            // Kept records are a valid prefix: numbered from 0 in order.
            for (k, rec) in parser.records.enumerated() where rec.seq != k { XCTFail("case \(n): record \(k) has seq \(rec.seq)"); break }
            if parser.complete {
                complete += 1
                XCTAssertEqual(parser.records.last?.type, .done, "case \(n)")
            }
            switch parser.error {
            case nil: break
            case .tooManyRecords?:
                failed += 1
                XCTAssertEqual(parser.records.count, Self.limits.maxRecords, "case \(n)")
            case .recordAfterDone?, .lineTooLong?:
                failed += 1
            case let e?:
                failed += 1
                XCTAssertFalse(parser.complete, "case \(n): \(e) after a complete stream")
            }
        }
        XCTAssertGreaterThan(complete, 1000, "some generated streams stay valid")
        XCTAssertGreaterThan(failed, 10_000, "most mutations are rejected")
    }

    func testRecordsBeforeAnErrorAreKept() throws {
        var r = Rand(state: 7)
        let lines = Self.validLines(6, &r)
        for cut in 1..<lines.count {
            var parser = RecordStreamParser(limits: Self.limits)
            parser.feed(Self.flat(Array(lines.prefix(cut))))
            parser.feed(Array("garbage\n".utf8))
            parser.feed(lines[cut])
            parser.finish()
            XCTAssertEqual(parser.records.count, cut)
            XCTAssertEqual(parser.error, .notJSON(line: cut + 1, excerpt: "garbage"))
            XCTAssertFalse(parser.complete)
        }
    }

    func testLongLineIsRejectedWithoutBufferingIt() {
        var parser = RecordStreamParser(limits: Self.limits)
        parser.feed([UInt8](repeating: UInt8(ascii: "{"), count: 1_000_000))
        XCTAssertEqual(parser.error, .lineTooLong(line: 1, limit: 4096))
        parser.feed(Array("{\"seq\":0,\"type\":\"done\",\"count\":0}\n".utf8))
        XCTAssertTrue(parser.records.isEmpty)
    }

    func testTooManyRecordsStopsAtTheLimit() {
        var r = Rand(state: 9)
        var parser = RecordStreamParser(limits: Self.limits)
        for line in Self.validLines(80, &r) { parser.feed(line) }
        XCTAssertEqual(parser.records.count, Self.limits.maxRecords)
        XCTAssertEqual(parser.error, .tooManyRecords(limit: Self.limits.maxRecords))
    }
}
