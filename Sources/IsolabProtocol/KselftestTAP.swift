/// A kselftest program's TAP output read back into its results: one ``TAPResult`` per
/// `ok N NAME` / `not ok N NAME` line, with the directive the kselftest helpers append
/// (`# SKIP reason`, `# XFAIL reason`, `# XPASS`), and the plan (`1..N`).
///
/// The kselftest harness (tools/testing/selftests/kselftest_harness.h) prints each test as
/// `FIXTURE.VARIANT.TEST` (or `FIXTURE.TEST`, `global.TEST`); its `#` comment lines (the test's
/// own messages, assertion failures) are kept with the test they follow, so a failure can be
/// reported with the lines that explain it.
public struct TAPResults: Codable, Equatable, Sendable {
    /// `1..N`: the tests the program announced; nil if it printed no plan.
    public var planned: Int?
    public var tests: [TAPResult]

    public init(planned: Int? = nil, tests: [TAPResult] = []) {
        self.planned = planned
        self.tests = tests
    }

    /// Parses `output` (stdout and stderr as the program wrote them).
    public init(parsing output: String) {
        var planned: Int?
        var tests: [TAPResult] = []
        var comments: [String] = []
        // "\r\n" is one Character: split on any newline.
        for raw in output.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }) {
            let line = String(raw)
            if planned == nil, let n = Self.plan(line) {
                planned = n
            } else if let result = TAPResult(line: line, comments: comments) {
                tests.append(result)
                comments = []
            } else if !line.isEmpty, !line.hasPrefix("TAP version") {
                comments.append(line)
                // Keep a failing test's context bounded: the last 40 lines before its result.
                if comments.count > 40 { comments.removeFirst(comments.count - 40) }
            }
        }
        self.planned = planned
        self.tests = tests
    }

    static func plan(_ line: String) -> Int? {
        guard line.hasPrefix("1.."), let n = Int(line.dropFirst(3).prefix(while: \.isNumber)) else { return nil }
        return n
    }
}

/// One test's line.
public struct TAPResult: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        case pass, fail, skip, xfail, xpass
    }

    public var number: Int
    public var name: String
    public var status: Status
    /// The directive's text (`SKIP`'s or `XFAIL`'s reason).
    public var reason: String?
    /// Output lines between the previous result and this one (the test's log), at most 40.
    public var log: [String]

    public init(number: Int, name: String, status: Status, reason: String? = nil, log: [String] = []) {
        self.number = number
        self.name = name
        self.status = status
        self.reason = reason
        self.log = log
    }

    /// `ok 3 fixture.variant.test # SKIP no hugepages`, `not ok 4 name`; nil for other lines.
    init?(line: String, comments: [String]) {
        let failed: Bool
        var rest: Substring
        if line.hasPrefix("ok ") { failed = false; rest = line.dropFirst(3) }
        else if line.hasPrefix("not ok ") { failed = true; rest = line.dropFirst(7) }
        else { return nil }
        let digits = rest.prefix(while: \.isNumber)
        guard let n = Int(digits) else { return nil }
        rest = rest.dropFirst(digits.count)
        if rest.hasPrefix(" - ") { rest = rest.dropFirst(3) } else if rest.hasPrefix(" ") { rest = rest.dropFirst() }
        var name = String(rest)
        var status: Status = failed ? .fail : .pass
        var reason: String?
        if let hash = Self.directiveStart(rest) {
            let directive = rest[rest.index(hash, offsetBy: 3)...]
            let word = directive.prefix(while: { !$0.isWhitespace }).uppercased()
            let text = directive.dropFirst(word.count).drop(while: { $0.isWhitespace })
            switch word {
            case "SKIP": status = .skip
            case "XFAIL": status = .xfail
            case "XPASS": status = .xpass
            case "TODO": status = failed ? .xfail : .xpass
            default: break
            }
            if status != .pass && status != .fail || word == "TODO" {
                name = String(rest[..<hash])
                reason = text.isEmpty ? nil : String(text)
            }
        }
        while name.last == " " || name.last == "\t" { name.removeLast() }
        self.init(number: n, name: name, status: status, reason: reason, log: comments)
    }

    /// Where ` # ` (the directive's start) is in the rest of a result line.
    static func directiveStart(_ s: Substring) -> Substring.Index? {
        var i = s.startIndex
        while i < s.endIndex {
            if s[i...].hasPrefix(" # ") { return i }
            i = s.index(after: i)
        }
        return nil
    }
}
