"""V5 quick run: FCN, U-Net and DeepLab learn the masks; U-Net's skips sharpen the boundaries."""


def test_v5_quick_holds(run_quick):
    s = run_quick("segment-shapes")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["boundary_miou_unet"] > m["boundary_miou_unet_noskip"]
    for k in ("fcn", "unet", "unet_noskip", "deeplab"):
        assert m[f"boundary_miou_{k}"] <= m[f"miou_{k}"] + 0.05        # boundaries are the hard part
        assert 0 < m[f"pixel_acc_{k}"] <= 1
