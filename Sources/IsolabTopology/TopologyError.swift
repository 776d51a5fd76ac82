import IsolabModel

/// A topology file the loader refuses: where, which field, what is wrong, what is accepted.
public struct TopologyError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// The field's path in the file, e.g. `fabric[0].children[1].slot`.
    public var field: String
    public var message: String
    public var accepted: String?

    public init(file: String, line: Int, column: Int, field: String, message: String, accepted: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.message = message
        self.accepted = accepted
    }

    public var description: String {
        "\(file):\(line):\(column): \(field): \(message)" + (accepted.map { " (accepted: \($0))" } ?? "")
    }
}
