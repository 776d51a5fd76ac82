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
// happens in a child the agent can abandon. Sysfs writes use CVFIO's clone(2)d writer instead
// (Child.write); this helper is its fallback where that clone is refused.

let arguments = CommandLine.arguments
if arguments.count == 4, arguments[1] == "write" {
    exit(HelperExit.code(forErrno: Posix.write(arguments[2], arguments[3])))
}

let agentName = "isolab-agent"
let channel = Channel(path: arguments.count >= 3 && arguments[1] == "--channel" ? arguments[2] : "/dev/ttyS1")
let kmsg = KernelLogReader()
let planPath = ProcessInfo.processInfo.environment["ISOLAB_PLAN"] ?? GuestPlan.path

/// Decodes a plan and checks its protocol version.
func decodePlan(_ bytes: [UInt8], from source: String) -> Result<GuestPlan, PlanError> {
    let plan: GuestPlan
    do {
        plan = try JSONDecoder().decode(GuestPlan.self, from: Data(bytes))
    } catch {
        return .failure(PlanError(runID: "", message: "the plan \(source) is not a GuestPlan: \(error)"))
    }
    guard plan.version == isolabProtocolVersion else {
        return .failure(PlanError(runID: plan.runID, message: "the plan speaks protocol \(plan.version), this agent \(isolabProtocolVersion)"))
    }
    return .success(plan)
}

struct PlanError: Error { var runID: String; var message: String }

var planResult: Result<GuestPlan, PlanError> = {
    guard let bytes = Posix.read(planPath, limit: 16 << 20) else {
        let why = errno
        // A guest booted on a host that shares no files with isolab (its initramfs is the
        // image's own, uploaded once): no plan file; say `ready` and take the plan from the
        // channel, then start a new stream, as a restored copy does.
        // A `ready` or a plan lost on the way (seen on QEMU 7.2's pty ports: 5 boots in 88)
        // is asked for again: `ready` every 2 s until a whole plan arrives.
        if why == ENOENT, channel.device != "stdout" {
            defer { channel.restart() }
            var last: Result<GuestPlan, PlanError> = .failure(PlanError(runID: "", message: "no plan file, and no plan came on the control channel in 120 s"))
            for _ in 0..<60 {
                channel.restart()
                channel.send { Record(seq: $0, type: .ready) }
                channel.drain()
                guard let line = channel.readLine(timeoutMilliseconds: 2000) else { continue }
                last = decodePlan(line, from: "from the control channel")
                if case .success = last { break }
            }
            return last
        }
        return .failure(PlanError(runID: "", message: "cannot read the plan \(planPath): \(Posix.errorText(why))"))
    }
    return decodePlan(bytes, from: planPath)
}()

var repairedAfterRestore: [String]?
var saved: SavedInventory?

// Snapshot mode: report the inventory, say `ready`, and wait. The host saves the guest now;
// each restored copy resumes here, reads its own plan from the channel and runs it as a new
// stream (numbered from 0 again, with its own hello and a fresh inventory the host checks
// against the saved one).
if case .success(let plan) = planResult, plan.serve == true {
    channel.send { Record(seq: $0, type: .hello, hello: Hello(runID: plan.runID, agent: agentName)) }
    let serving = Agent(plan: plan, channel: channel, kmsg: kmsg)
    saved = serving.savedInventory(serving.reportInventory())
    let headers = ConfigHeaders.capture()
    channel.send { Record(seq: $0, type: .ready) }
    channel.drain()
    if let line = channel.readLine() {
        repairedAfterRestore = headers.restoreLost()
        planResult = decodePlan(line, from: "from the control channel")
    } else {
        planResult = .failure(PlanError(runID: plan.runID, message: "the control channel closed before a plan came"))
    }
    channel.restart()
}

switch planResult {
case .failure(let e):
    channel.send { Record(seq: $0, type: .hello, hello: Hello(runID: e.runID, agent: agentName)) }
    channel.send { Record(seq: $0, type: .fatal, message: e.message) }
case .success(let plan):
    channel.send { Record(seq: $0, type: .hello, hello: Hello(runID: plan.runID, agent: agentName, restoredConfig: repairedAfterRestore)) }
    Agent(plan: plan, channel: channel, kmsg: kmsg, saved: saved).run()
}
channel.finish()
// A restored copy is ended by the host at `done`. Its own poweroff would race that: when the
// guest stops first, libvirt finds QEMU's zombie and waits 200 ms before it calls the domain
// stopped (virProcessKillPainfully), which the next copy, of the same name, must wait for.
// A guest whose ports are read through libvirt is ended by the host too (the plan says so):
// records still in QEMU's pty when it exits would be lost.
var hostEndsGuest = false
if case .success(let plan) = planResult, plan.hostEndsGuest == true { hostEndsGuest = true }
if repairedAfterRestore != nil || hostEndsGuest {
    while true { pause() }
}
exit(0)
