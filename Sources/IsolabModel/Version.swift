public enum IsolabModelVersion { public static let string = "0.1.0" }
