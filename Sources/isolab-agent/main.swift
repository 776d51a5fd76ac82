#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#endif
import IsolabAgentCore
import IsolabProtocol

// isolab-agent: runs as a child of the guest's init. Reads the plan from /isolab/plan.json and
// streams JSON-line records to /dev/ttyS1 (or stdout).
//
// Hidden helper: `isolab-agent write PATH VALUE` writes VALUE to PATH in one write(2) and exits
// with the errno (HelperExit), so that a sysfs write that blocks or whose task the kernel kills
// happens in a child the agent can abandon.

let arguments = CommandLine.arguments
if arguments.count == 4, arguments[1] == "write" {
    exit(HelperExit.code(forErrno: Posix.write(arguments[2], arguments[3])))
}

let agentName = "isolab-agent"
let channel = Channel(path: arguments.count >= 3 && arguments[1] == "--channel" ? arguments[2] : "/dev/ttyS1")
let kmsg = KernelLogReader()
let planPath = ProcessInfo.processInfo.environment["ISOLAB_PLAN"] ?? GuestPlan.path

let planResult: Result<GuestPlan, PlanError> = {
    guard let bytes = Posix.read(planPath, limit: 16 << 20) else {
        return .failure(PlanError(message: "cannot read the plan \(planPath): \(Posix.errorText(errno))"))
    }
    do {
        return .success(try JSONDecoder().decode(GuestPlan.self, from: Data(bytes)))
    } catch {
        return .failure(PlanError(message: "the plan \(planPath) is not a GuestPlan: \(error)"))
    }
}()

struct PlanError: Error { var message: String }

switch planResult {
case .failure(let e):
    channel.send { Record(seq: $0, type: .hello, hello: Hello(runID: "", agent: agentName)) }
    channel.send { Record(seq: $0, type: .fatal, message: e.message) }
case .success(let plan) where plan.version != isolabProtocolVersion:
    channel.send { Record(seq: $0, type: .hello, hello: Hello(runID: plan.runID, agent: agentName)) }
    channel.send { Record(seq: $0, type: .fatal, message: "the plan speaks protocol \(plan.version), this agent \(isolabProtocolVersion)") }
case .success(let plan):
    channel.send { Record(seq: $0, type: .hello, hello: Hello(runID: plan.runID, agent: agentName)) }
    Agent(plan: plan, channel: channel, kmsg: kmsg).run()
}
channel.finish()
exit(0)
