package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/virt"
)

// offlineSession reads the images of a shut-off domain directly. With
// restart, the domain was shut down for the backup and is started again
// at the end.
type offlineSession struct {
	s       *Domain
	u       undoStack
	disks   []*CaptureDisk
	imgs    []imagefmt.Image
	locks   []*imageLock
	restart *undoOp
	report  SessionReport
	downAt  time.Time
}

func (s *Domain) beginOffline(ctx context.Context, req CaptureRequest, shutdown bool, healed []string) (_ Session, err error) {
	o := &offlineSession{s: s}
	o.report.Warnings = healed
	defer func() {
		if err != nil {
			err = errors.Join(err, o.u.runAll(ctx))
		}
	}()
	if err := req.ready(); err != nil {
		return nil, err
	}
	if shutdown {
		if err := o.shutdown(ctx); err != nil {
			return nil, err
		}
	}
	// The persistent definition names the disks the VM boots with.
	_, d, err := s.domainXML(ctx, libvirt.DomainXMLInactive)
	if err != nil {
		return nil, err
	}
	disks, skipped, err := s.pickDisks(ctx, d, true)
	if err != nil {
		return nil, err
	}
	o.report.Warnings = append(o.report.Warnings, skipped...)
	o.u.push("releasing the images", func(context.Context) error { o.release(); return nil })
	for _, dd := range disks {
		lk, err := lockImage(dd.file)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", dd.target, err)
		}
		o.locks = append(o.locks, lk)
		img, err := imagefmt.OpenWith(dd.file, imagefmt.Options{Format: dd.format})
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", dd.target, err)
		}
		o.imgs = append(o.imgs, img)
		o.disks = append(o.disks, &CaptureDisk{
			Target:       dd.target,
			Source:       dd.source,
			SourceFormat: img.Info().Format,
			Reader:       img,
			Allocated:    imageAllocation(img),
		})
	}
	// Shut off for the whole copy: if the VM had been started in the
	// meantime, the locks above would have failed.
	if err := s.checkState(ctx, libvirt.DomainShutoff); err != nil {
		return nil, err
	}
	return o, nil
}

// shutdown presses the ACPI power button and waits for the domain to shut
// off; the undo starts it again.
func (o *offlineSession) shutdown(ctx context.Context) error {
	s := o.s
	persistent := int32(0)
	if err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		var err error
		persistent, err = l.DomainIsPersistent(s.dom)
		return err
	}); err != nil {
		return s.vmErr(err)
	}
	if persistent != 1 {
		return fmt.Errorf("%w: %s is a transient domain: shutting it down would remove it", ErrVMState, s.vm.Name)
	}
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	// Recorded first, so that a guard or the next backup starts the VM
	// again if this process dies (kill -9) while it is down.
	if _, err := s.newScratchDir(&o.u, scratchState{Domain: s.vm.UUID, Name: s.vm.Name, ShutDown: true}); err != nil {
		return err
	}
	o.restart = o.u.push("starting "+s.vm.Name+" again", o.start)
	s.notify("shutting %s down (ACPI power button), waiting up to %v", s.vm.Name, timeout)
	o.downAt = time.Now()
	deadline := time.Now().Add(timeout)
	var pressed time.Time
	for {
		var st int32
		if err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
			var err error
			st, _, err = l.DomainGetState(s.dom, 0)
			return err
		}); err != nil {
			return s.vmErr(err)
		}
		if libvirt.DomainState(st) == libvirt.DomainShutoff {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s did not shut down within %v (left running)", ErrVMState, s.vm.Name, timeout)
		}
		// Press again now and then: a guest still booting may have
		// missed the first press.
		if time.Since(pressed) > 10*time.Second {
			err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
				err := l.DomainShutdownFlags(s.dom, libvirt.DomainShutdownAcpiPowerBtn)
				if libvirtCode(err, libvirt.ErrInvalidArg) || libvirtCode(err, libvirt.ErrArgumentUnsupported) || libvirtCode(err, libvirt.ErrNoSupport) {
					// The hypervisor's own choice of method.
					err = l.DomainShutdown(s.dom)
				}
				return err
			})
			if err != nil && !libvirtCode(err, libvirt.ErrOperationInvalid) {
				return fmt.Errorf("domain %s: ACPI shutdown: %w", s.vm.Name, err)
			}
			pressed = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// start starts the domain if it is shut off.
func (o *offlineSession) start(ctx context.Context) error {
	started, err := o.startIfOff(ctx)
	if started {
		o.report.ShutdownMS = time.Since(o.downAt).Milliseconds()
	}
	return err
}

func (o *offlineSession) startIfOff(ctx context.Context) (started bool, err error) {
	s := o.s
	err = s.h.do(ctx, true, func(l *libvirt.Libvirt) error {
		st, _, err := l.DomainGetState(s.dom, 0)
		if err != nil || libvirt.DomainState(st) != libvirt.DomainShutoff {
			return err
		}
		if err := l.DomainCreate(s.dom); err != nil {
			return err
		}
		started = true
		return nil
	})
	return started, err
}

func (o *offlineSession) release() {
	for _, img := range o.imgs {
		img.Close()
	}
	o.imgs = nil
	for _, lk := range o.locks {
		lk.release()
	}
	o.locks = nil
}

func (o *offlineSession) Mode() string          { return repo.ModeOffline }
func (o *offlineSession) Consistency() string   { return repo.ConsistencyOffline }
func (o *offlineSession) Disks() []*CaptureDisk { return o.disks }
func (o *offlineSession) Report() SessionReport { return o.report }

func (o *offlineSession) SaveConfig(ctx context.Context, out *configOut) error {
	return o.s.saveDomainConfig(ctx, out)
}

func (o *offlineSession) End(ctx context.Context, ok bool) error {
	return o.u.runAll(ctx)
}

func (o *offlineSession) Committed(ctx context.Context) error { return nil }

// checkState fails unless the domain is in state want.
func (s *Domain) checkState(ctx context.Context, want libvirt.DomainState) error {
	var st int32
	if err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		var err error
		st, _, err = l.DomainGetState(s.dom, 0)
		return err
	}); err != nil {
		return s.vmErr(err)
	}
	if libvirt.DomainState(st) != want {
		return fmt.Errorf("%w: %s is now %s", ErrVMState, s.vm.Name, virt.StateName(libvirt.DomainState(st)))
	}
	return nil
}
