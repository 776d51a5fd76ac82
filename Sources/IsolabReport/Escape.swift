/// Escaping for text a topology author (or a guest) wrote, per output format.
public enum Escape {
    /// XML and HTML text and double- or single-quoted attribute values. Characters XML 1.0 does
    /// not allow (most C0 controls) become U+FFFD; newlines in attributes survive as `&#10;`.
    public static func xml(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\n": out += "&#10;"
            case "\r": out += "&#13;"
            case "\t": out += "&#9;"
            default:
                if u.value < 0x20 || u.value == 0xFFFE || u.value == 0xFFFF || (0xD800...0xDFFF).contains(u.value) {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }

    /// XML/HTML element text that keeps its line breaks (inside `<pre>` or a JUnit body).
    public static func xmlText(_ s: String) -> String {
        s.split(separator: "\n", omittingEmptySubsequences: false).map { xml(String($0)) }.joined(separator: "\n")
    }

    /// Markdown inline text and table cells (GitHub flavoured) that never starts a line: HTML is
    /// neutralised, emphasis, code, link and table characters are backslash-escaped, `@` cannot
    /// mention anyone, and a line break becomes a space.
    public static func markdown(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "@": out += "&#64;"
            case "\n", "\r", "\r\n": out += " "
            case "\\", "`", "*", "_", "[", "]", "|", "~":
                out += "\\" + String(ch)
            default: out.append(ch)
            }
        }
        return out
    }

    /// A TAP test description: one line, and `#` cannot start a directive.
    public static func tap(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "\n", "\r", "\r\n": out += " "
            case "#": out += "\\#"
            case "\\": out += "\\\\"
            default: out.append(ch)
            }
        }
        return out
    }

    /// A YAML double-quoted scalar (for TAP 13 diagnostics).
    public static func yamlString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    out += "\\x" + String(u.value, radix: 16).leftPadded(to: 2)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

extension String {
    func leftPadded(to n: Int, with c: Character = "0") -> String {
        count >= n ? self : String(repeating: c, count: n - count) + self
    }
}
