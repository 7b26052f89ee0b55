% official_style_eval(inference_file, test_set_dir): score inference_data.mat the way the MPI-INF-3DHP
% release's test_util scripts do, and print what a test needs to check, one "key value ..." per line.
%
% For every variable TSk of the inference file: load TSk/annot_data.mat, take its valid frames in order,
% the ground truth univ_annot3 minus its pelvis (joint 15), the prediction TSk(:,:,:,m) as given (3x17),
% and the Euclidean error per joint. Then PCK (< 150 mm) and AUC (thresholds 0:5:150) per joint group,
% totals weighted by group size, for the 17-joint and the 14-joint groups, and MPJPE over all 17 joints.
function official_style_eval(inference_file, test_set_dir)
  pred = load(inference_file);
  errors = zeros(17, 1, 0);
  for k = 1:6
    name = sprintf('TS%d', k);
    if ~isfield(pred, name)
      continue;
    end
    P = pred.(name);
    printf('size %s %d %d %d %d\n', name, size(P, 1), size(P, 2), size(P, 3), size(P, 4));
    printf('class %s %s\n', name, class(P));
    dat = load(fullfile(test_set_dir, name, 'annot_data.mat'));
    valid = find(dat.valid_frame(:) == 1);
    printf('valid %s %d\n', name, numel(valid));
    e = zeros(17, 1, numel(valid));
    for m = 1:numel(valid)
      j = valid(m);
      gt = dat.univ_annot3(:, :, :, j) - repmat(dat.univ_annot3(:, 15, :, j), 1, 17);
      d = sqrt(sum((P(:, :, :, m) - gt) .^ 2, 1));
      e(:, 1, m) = d(:);
    end
    errors = cat(3, errors, e);
  end
  groups.g17 = {[1, 17], [2], [3, 6], [4, 7], [5, 8], [16], [9, 12, 15], [10, 13], [11, 14]};
  groups.g14 = {[1], [2], [3, 6], [4, 7], [5, 8], [9, 12], [10, 13], [11, 14]};
  thresholds = 0:5:150;
  nf = size(errors, 3);
  for name = {'g17', 'g14'}
    g = groups.(name{1});
    curve = zeros(1, numel(thresholds));
    pck = 0;
    count = 0;
    for i = 1:numel(g)
      idx = g{i};
      for t = 1:numel(thresholds)
        curve(t) = curve(t) + sum(sum(errors(idx, 1, :) < thresholds(t), 3), 1) / (numel(idx) * nf) * numel(idx);
      end
      pck = pck + 100 * sum(sum(errors(idx, 1, :) < 150, 3), 1) / (numel(idx) * nf) * numel(idx);
      count = count + numel(idx);
    end
    printf('pck %s %.10f\n', name{1}(2:end), pck / count);
    printf('auc %s %.10f\n', name{1}(2:end), 100 * mean(curve / count));
  end
  printf('mpjpe %.10f\n', mean(mean(errors, 3)));
  printf('frames %d\n', nf);
end
